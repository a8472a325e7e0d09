from __future__ import annotations

import pytest

from registry.schemas import InstanceInfo, ModelInfo, RegistrationRefused
from registry.state import RegistryState


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


def test_version_changes_only_when_the_set_changes():
    state = RegistryState()
    state.register(info(), InstanceInfo("i1"), now=0)
    version = state.version
    state.register(info(), InstanceInfo("i1"), now=5)
    state.mark_alive("m", "i1", now=6)
    assert state.version == version


def test_stale_instances_dropped():
    state = RegistryState()
    state.register(info(), InstanceInfo("old"), now=0)
    state.register(info(), InstanceInfo("fresh"), now=0)
    state.mark_alive("m", "fresh", now=29)
    assert state.drop_stale(now=31, max_age_s=30) == [("m", "old")]
    assert state.snapshot().models[0].instances == 1


def test_missed_ping_drops_instance():
    state = RegistryState()
    state.register(info(), InstanceInfo("i1", actor_name="a"), now=0)
    assert state.mark_missed("m", "i1")
    assert state.snapshot().models == ()
    assert not state.mark_missed("m", "i1")
