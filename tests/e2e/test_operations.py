"""What an operator sees on a real Ray Serve: each replica's node, process and memory."""

from __future__ import annotations

from deployments.echo import Echo
from tests.utils.e2e import submit, wait_for, wait_result


def test_model_detail_shows_each_replica_with_its_node_memory_and_work(http, auth, deploy_model):
    headers = auth()
    echo = deploy_model(Echo, num_replicas=2)
    task = submit(http, headers, echo, {"text": "counted"})
    assert wait_result(http, headers, echo, task)["status"] == "succeeded"

    def detail():
        body = http.get(f"/models/{echo}", headers=headers).json()
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
