"""The gateway's model catalog through registry restarts and outages (no Ray, no services)."""

from __future__ import annotations

import asyncio

import pytest

from app.catalog.catalog import ModelCatalog
from app.core.errors import ModelNotFound, Unavailable
from deployments._runtime.spec import model_info
from deployments.echo import Echo
from deployments.sdk import spec_of
from registry.client import RegistryUnavailable
from registry.schemas import InstanceInfo
from registry.state import RegistryState


class FakeRegistry:
    """A registry whose state can be replaced (a restart) or made unreachable."""

    def __init__(self) -> None:
        self.state = RegistryState(now=0.0)
        self.now = 0.0
        self.down = False

    def restart(self) -> None:
        self.state = RegistryState(now=self.now)

    async def snapshot(self):
        if self.down:
            raise RegistryUnavailable("down")
        return self.state.snapshot(now=self.now)


def register(registry: FakeRegistry, instance: str = "i1") -> None:
    registry.state.register(model_info(spec_of(Echo)), InstanceInfo(instance_id=instance), 0.0)


def run(coro):
    return asyncio.run(coro)


def test_restarted_registry__models_kept_during_grace_then_dropped():
    registry = FakeRegistry()
    catalog = ModelCatalog(registry, ttl_s=0, grace_s=30)
    register(registry)
    assert run(catalog.get("echo")).view.name == "echo"
    registry.now = 100.0
    registry.restart()  # empty, young
    assert run(catalog.get("echo")).view.name == "echo"
    assert [m.view.name for m in run(catalog.live())] == ["echo"]
    registry.now = 131.0  # the grace is over and echo never came back
    with pytest.raises(ModelNotFound):
        run(catalog.get("echo"))


def test_restarted_registry__model_that_re_registers_is_served_as_it_is_now():
    registry = FakeRegistry()
    catalog = ModelCatalog(registry, ttl_s=0, grace_s=30)
    register(registry)
    run(catalog.get("echo"))
    registry.now = 100.0
    registry.restart()
    register(registry, "i2")
    registry.now = 131.0
    assert run(catalog.get("echo")).view.instances == 1


def test_unreachable_registry__last_list_served_then_503():
    registry = FakeRegistry()
    catalog = ModelCatalog(registry, ttl_s=0, stale_s=0.2)
    register(registry)
    run(catalog.get("echo"))
    registry.down = True
    assert run(catalog.get("echo")).view.name == "echo"
    import time

    time.sleep(0.25)
    with pytest.raises(Unavailable):
        run(catalog.get("echo"))


def test_unreachable_registry_at_start__503_not_404():
    registry = FakeRegistry()
    registry.down = True
    with pytest.raises(Unavailable):
        run(ModelCatalog(registry, ttl_s=0).get("echo"))
