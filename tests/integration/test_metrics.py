"""/metrics reflects queues, task outcomes and latencies, and the set of live models."""

from __future__ import annotations

import asyncio

from deployments._runtime.spec import model_info
from deployments.echo import Echo
from registry.schemas import InstanceInfo
from tests.utils.prometheus import sample


async def scrape_until(gateway, name, ready):
    """A scrape once the queue gauge reads `ready` (lengths are read at most once a second)."""
    for _ in range(50):
        text = (await gateway.get("/metrics")).text
        if sample(text, "app_queue_messages", model=name, state="ready") == ready:
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"app_queue_messages of {name} never read {ready}")


async def test_metrics_move_with_a_burst_of_tasks(gateway, user, deploy, registry):
    headers = await user()
    model = await deploy(Echo(), max_attempts=1)
    name = model.consumer.spec.name
    before = (await gateway.get("/metrics")).text
    assert sample(before, "app_live_model_info", model=name) == 1
    assert sample(before, "app_model_instances", model=name) == 1
    assert sample(before, "app_queue_messages", model=name, state="ready") == 0

    for i in range(5):
        body = {"text": str(i), "fail_with": "boom" if i == 4 else ""}
        assert (
            await gateway.post(f"/models/{name}/tasks", json=body, headers=headers)
        ).status_code == 202
    queued = await scrape_until(gateway, name, ready=5)
    assert sample(queued, "app_tasks_submitted_total", model=name) == 5

    await model.drain()
    instance = InstanceInfo(instance_id="metrics-instance")
    await registry.register(
        model_info(model.consumer.spec), instance, model.consumer.metrics.snapshot()
    )
    after = await scrape_until(gateway, name, ready=0)
    assert sample(after, "app_tasks_finished_total", model=name, status="succeeded") == 4
    assert sample(after, "app_tasks_finished_total", model=name, status="failed") == 1
    assert sample(after, "app_task_latency_seconds_count", model=name) == 5
    assert sample(after, "app_task_run_seconds_count", model=name) == 5
    # The failing task exhausted its one attempt and was dead-lettered.
    assert sample(after, "app_dead_letter_messages", model=name) == 1
    assert (
        sample(
            after,
            "app_http_request_duration_seconds_count",
            route="/models/{name}/tasks",
            method="POST",
            code="202",
        )
        == 5
    )

    # The model goes away: it leaves the live gauges, its counters stay.
    for instance_id in list(registry.state._models[name].instances):
        await registry.logout(name, instance_id)
    gone = (await gateway.get("/metrics")).text
    assert sample(gone, "app_live_model_info", model=name) is None
    assert sample(gone, "app_tasks_finished_total", model=name, status="succeeded") == 4
    assert sample(gone, "app_live_models") == sample(after, "app_live_models") - 1


async def test_with_a_scrape_token_metrics_answer_only_its_bearer(gateway, services):
    token = "scrape-token-of-sufficient-length-0123456789"
    from pydantic import SecretStr

    services.settings.metrics_token = SecretStr(token)
    assert (await gateway.get("/metrics")).status_code == 401
    wrong = await gateway.get("/metrics", headers={"Authorization": "Bearer " + "x" * 44})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    right = await gateway.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert right.status_code == 200 and "app_live_models" in right.text


async def test_scrapes_reuse_one_channel_for_queue_lengths(gateway, deploy, services, monkeypatch):
    """Each scrape used to open a channel per queue; now lengths come through one kept channel."""
    await deploy(Echo())
    await gateway.get("/metrics")
    connection = services.publisher._connection
    opened = []
    open_channel = connection.channel

    def counting(*args, **kwargs):
        opened.append(1)
        return open_channel(*args, **kwargs)

    monkeypatch.setattr(connection, "channel", counting)
    for _ in range(3):
        await asyncio.sleep(1.05)  # past the one-second reuse of a reading
        assert (await gateway.get("/metrics")).status_code == 200
    assert opened == []
