"""What an operator sees on a real Ray Serve: each replica's node, process and memory."""

from __future__ import annotations

from deployments.echo import Echo
from tests.e2e.conftest import PING_INTERVAL_S
from tests.utils.e2e import queue_stat, submit, wait_for, wait_result


def test_model_detail_shows_each_replica_with_its_node_memory_and_work(
    http, auth, admin_auth, deploy_model
):
    headers = auth()
    echo = deploy_model(Echo, num_replicas=2)
    task = submit(http, headers, echo, {"text": "counted"})
    assert wait_result(http, headers, echo, task)["status"] == "succeeded"

    def detail():
        body = http.get(f"/models/{echo}", headers=admin_auth).json()
        replicas = body["replicas"]
        done = sum(r["tasks_succeeded"] for r in replicas)
        return body if len(replicas) == 2 and done >= 1 else None

    body = wait_for(detail, timeout=30)
    assert body["name"] == echo and body["version"] == "0" and len(body["fingerprint"]) >= 16
    assert body["queue"]["ready"] == 0 and body["queue"]["dead_letters"] == 0
    assert body["disabled"] is None
    for replica in body["replicas"]:
        assert replica["node_id"] and replica["node_address"] == "127.0.0.1"
        assert replica["pid"] > 0 and replica["state"] == "running"
        assert 20 * 2**20 < replica["rss_bytes"] < 4 * 2**30  # a Python process's memory
        assert replica["uptime_s"] >= 0 and replica["last_ping"]
    assert len({r["pid"] for r in body["replicas"]}) == 2  # two processes
    # Where replicas run is for admins: a user sees their work, not the nodes.
    seen = http.get(f"/models/{echo}", headers=headers).json()["replicas"]
    assert [(r["node_id"], r["node_address"], r["pid"]) for r in seen] == [(None, None, None)] * 2
    assert {r["replica_id"] for r in seen} == {r["replica_id"] for r in body["replicas"]}


def _consumers(queue: str) -> int | None:
    return queue_stat(queue, "consumers")


def test_a_replica_refused_later_stops_consuming(http, auth, deploy_model):
    """The registry loses the replica's instance and another model takes the name with other
    message types before the replica re-registers: that replica stops taking the queue's tasks
    (they are no longer its model's) and fails its health check, instead of only logging it."""
    import asyncio
    import threading
    import time

    from app.core.settings import get_settings
    from protos.descriptors import descriptor_set, fingerprint
    from protos.iris_pb2 import IrisRequest, IrisResponse
    from registry.client import RayRegistry
    from registry.schemas import InstanceInfo, ModelInfo, RegistrationRefused

    name = deploy_model(Echo)
    wait_for(lambda: _consumers(name) == 1, timeout=30)
    settings = get_settings()
    registry = RayRegistry.from_settings(settings)
    impostor = ModelInfo(
        name=name,
        request_type=IrisRequest.DESCRIPTOR.full_name,
        response_type=IrisResponse.DESCRIPTOR.full_name,
        descriptor_set=descriptor_set(IrisRequest, IrisResponse),
        fingerprint=fingerprint(IrisRequest, IrisResponse),
    )
    instance = InstanceInfo(instance_id="impostor")

    replica_id = wait_for(lambda: http.get(f"/models/{name}", headers=auth()).json()["replicas"])[
        0
    ]["replica_id"]

    async def take_the_name() -> bool:
        """Drop the replica's instance (as a registry that lost it would) and register the
        other model at once; False if the replica's re-registration came in between."""
        await registry.logout(name, replica_id)
        try:
            await registry.register(impostor, instance)
        except RegistrationRefused:
            return False
        return True

    assert any(asyncio.run(take_the_name()) for _ in range(5)), "the replica always won"
    # The other model stays alive (it re-registers, as its replicas would).
    stop = threading.Event()

    def keep_alive() -> None:
        while not stop.wait(PING_INTERVAL_S / 2):
            asyncio.run(registry.register(impostor, instance))

    alive = threading.Thread(target=keep_alive, daemon=True)
    alive.start()
    try:
        # Its next re-registration is refused: it stops consuming, and its replacements are
        # refused at start, so nothing consumes the queue any more.
        wait_for(lambda: _consumers(name) == 0, timeout=10 * PING_INTERVAL_S + 10)
        time.sleep(3 * PING_INTERVAL_S)
        assert _consumers(name) == 0
        # The name stays the other model's: the refused replica did not win it back.
        listed_type = wait_for(lambda: _listed_types(http, auth(), name), timeout=10)
        assert listed_type == IrisRequest.DESCRIPTOR.full_name
    finally:
        stop.set()
        alive.join()
        asyncio.run(registry.logout(name, "impostor"))


def _listed_types(http, headers, name):
    answer = http.get("/models", headers=headers)
    for model in answer.json() if answer.status_code == 200 else []:
        if model["name"] == name:
            return model["request_type"]
    return None
