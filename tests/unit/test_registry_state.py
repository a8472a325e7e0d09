from __future__ import annotations

import time

import pytest

from registry.schemas import InstanceInfo, ModelInfo, PingResult, RegistrationRefused
from registry.state import MAX_MISSED_PINGS, RegistryState


def info(name="m", request="a.Req", response="a.Resp", fingerprint="f1"):
    return ModelInfo(name, request, response, b"", fingerprint, "desc")


def test_instances_counted_and_model_dropped_with_its_last_instance():
    state = RegistryState()
    assert state.register(info(), InstanceInfo("i1"), now=0)
    assert state.register(info(), InstanceInfo("i2"), now=0)
    assert not state.register(info(), InstanceInfo("i1"), now=1)  # refresh, not new
    assert state.snapshot().models[0].instances == 2
    assert state.logout("m", "i1")
    assert state.snapshot().models[0].instances == 1
    assert state.logout("m", "i2")
    assert state.snapshot().models == ()
    assert not state.logout("m", "i2")


def test_same_name_other_types__refused_and_first_untouched():
    state = RegistryState()
    state.register(info(), InstanceInfo("i1"), now=0)
    with pytest.raises(RegistrationRefused, match="a.Req"):
        state.register(info(request="b.Other"), InstanceInfo("i2"), now=0)
    (model,) = state.snapshot().models
    assert model.request_type == "a.Req" and model.instances == 1


def test_schema_change_under_same_names__newest_descriptor_wins():
    state = RegistryState()
    state.register(info(fingerprint="old"), InstanceInfo("i1"), now=0)
    version = state.version
    state.register(info(fingerprint="new"), InstanceInfo("i2"), now=0)
    assert state.snapshot().models[0].fingerprint == "new"
    assert state.version > version


def test_a_settings_only_redeploy_is_described_by_its_newest_instance():
    """A rolling update with the same messages but new settings: the new replica's info wins
    while the old one still re-registers, and the old one's comes back only if the new goes."""
    import dataclasses

    state = RegistryState()
    old = info()
    new = dataclasses.replace(old, cache_ttl_s=3600.0, version="2", timeout_s=5.0)
    state.register(old, InstanceInfo("old"), now=0)
    version = state.version
    state.register(new, InstanceInfo("new"), now=1)
    for tick in range(2, 5):  # both keep re-registering, as replicas do every interval
        state.register(old, InstanceInfo("old"), now=tick)
        state.register(new, InstanceInfo("new"), now=tick)
    (model,) = state.snapshot().models
    assert (model.cache_ttl_s, model.version, model.timeout_s) == (3600.0, "2", 5.0)
    assert model.instances == 2 and state.version > version
    settled = state.version
    state.register(new, InstanceInfo("new"), now=5)
    assert state.version == settled  # a refresh with nothing new changes nothing
    state.logout("m", "new")
    assert state.snapshot().models[0].cache_ttl_s == 0.0


def test_version_changes_only_when_the_set_changes():
    state = RegistryState()
    state.register(info(), InstanceInfo("i1"), now=0)
    version = state.version
    state.register(info(), InstanceInfo("i1"), now=5)
    state.record_ping("m", "i1", PingResult.ALIVE, now=6)
    assert state.version == version


def test_stale_instances_dropped():
    state = RegistryState()
    state.register(info(), InstanceInfo("old"), now=0)
    state.register(info(), InstanceInfo("fresh"), now=0)
    state.record_ping("m", "fresh", PingResult.ALIVE, now=29)
    assert state.drop_stale(now=31, max_age_s=30) == [("m", "old")]
    assert state.snapshot().models[0].instances == 1


def test_a_gone_actor_is_dropped_at_once():
    state = RegistryState()
    state.register(info(), InstanceInfo("i1", actor_name="a"), now=0)
    assert state.record_ping("m", "i1", PingResult.GONE, now=1)
    assert state.snapshot().models == ()
    assert not state.record_ping("m", "i1", PingResult.GONE, now=2)


def test_unanswered_pings_drop_an_instance_only_when_in_a_row():
    state = RegistryState()
    state.register(info(), InstanceInfo("i1", actor_name="a"), now=0)
    assert not state.record_ping("m", "i1", PingResult.TIMEOUT, now=1)  # busy for a moment
    assert not state.record_ping("m", "i1", PingResult.ALIVE, now=2)  # answered: count reset
    assert not state.record_ping("m", "i1", PingResult.TIMEOUT, now=3)
    assert state.details("m")[0].missed_pings == MAX_MISSED_PINGS - 1
    assert state.record_ping("m", "i1", PingResult.TIMEOUT, now=4)
    assert state.snapshot().models == ()


class FakeProbes:
    """The registry's view of the world, scripted by the test."""

    def __init__(self) -> None:
        self.answers: dict[str, PingResult] = {}
        self.applications: set[str] | None = set()

    async def ping(self, actor_name: str, timeout_s: float) -> PingResult:
        return self.answers.get(actor_name, PingResult.GONE)

    async def serve_applications(self) -> set[str] | None:
        return self.applications


async def test_the_actor_pings_through_its_injected_probes():
    from registry.actor import RegistryActor

    probes = FakeProbes()
    actor = RegistryActor(ping_interval_s=60, ping_timeout_s=1, probes=probes)
    state = actor._state  # the round's effects, read directly
    state.register(info(), InstanceInfo("up", actor_name="a-up"), now=time.time())
    state.register(info(), InstanceInfo("slow", actor_name="a-slow"), now=time.time())
    state.register(info(), InstanceInfo("dead", actor_name="a-dead"), now=time.time())
    probes.answers = {"a-up": PingResult.ALIVE, "a-slow": PingResult.TIMEOUT}
    await actor._ping_round()
    assert [d.instance_id for d in state.details("m")] == ["up", "slow"]
    await actor._ping_round()
    assert [d.instance_id for d in state.details("m")] == ["up"]
    # A scaled-to-zero model stays listed while its application exists, not after.
    sleepy = ModelInfo("z", "a.Req", "a.Resp", b"", "f", "", app_name="z-app", scale_to_zero=True)
    state.register(sleepy, InstanceInfo("z1", actor_name="a-z1"), now=time.time())
    state.logout("z", "z1")
    probes.applications = {"z-app"}
    await actor._ping_round()
    assert {m.name for m in state.snapshot().models} == {"m", "z"}
    probes.applications = set()
    await actor._ping_round()
    assert {m.name for m in state.snapshot().models} == {"m"}
