"""An instance's registration over time: status sent along, and a refusal that comes later
(the name taken by other message types while the registry restarted) reaches the replica."""

from __future__ import annotations

import asyncio

from deployments._runtime.membership import Membership
from registry.schemas import InstanceInfo, ModelInfo, RegistrationRefused, ReplicaStatus
from tests.utils.registry import LocalRegistry


def _model(request_type: str) -> ModelInfo:
    return ModelInfo(
        name="shared",
        request_type=request_type,
        response_type="r.Out",
        descriptor_set=b"",
        fingerprint=request_type,
    )


async def test_status_goes_with_every_registration():
    registry = LocalRegistry()
    reports = iter(range(1, 100))
    membership = Membership(
        registry,
        _model("a.In"),
        InstanceInfo(instance_id="i1"),
        interval_s=0.01,
        status=lambda: ReplicaStatus(node_id="n1", pid=42, tasks_succeeded=next(reports)),
    )
    await membership.join()
    await asyncio.sleep(0.05)
    [detail] = registry.state.details("shared")
    assert detail.status.node_id == "n1" and detail.status.pid == 42
    assert detail.status.tasks_succeeded > 1  # refreshed by the heartbeat, not only at join
    await membership.leave()
    assert registry.state.details("shared") is None or registry.state.details("shared") == []


async def test_a_refusal_after_a_registry_restart_reaches_the_replica_once():
    registry = LocalRegistry()
    refusals: list[RegistrationRefused] = []

    async def refused(exc: RegistrationRefused) -> None:
        refusals.append(exc)

    membership = Membership(
        registry,
        _model("a.In"),
        InstanceInfo(instance_id="i1"),
        interval_s=0.01,
        on_refused=refused,
    )
    await membership.join()
    # The registry restarts (empty), and another model takes the name first.
    registry.state = type(registry.state)()
    await registry.register(_model("b.Other"), InstanceInfo(instance_id="i2"))
    for _ in range(100):
        if refusals:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len(refusals) == 1 and "already registered" in str(refusals[0])
    await membership.leave()
