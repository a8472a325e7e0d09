"""/metrics reflects queues, task outcomes and latencies, and the set of live models."""

from __future__ import annotations

from deployments._runtime.replica import model_info
from deployments.echo import Echo
from registry.schemas import InstanceInfo
from tests.utils.prometheus import sample


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
    queued = (await gateway.get("/metrics")).text
    assert sample(queued, "app_tasks_submitted_total", model=name) == 5
    assert sample(queued, "app_queue_messages", model=name, state="ready") == 5

    await model.drain()
    instance = InstanceInfo(instance_id="metrics-instance")
    await registry.register(
        model_info(model.consumer.spec), instance, model.consumer.metrics.snapshot()
    )
    after = (await gateway.get("/metrics")).text
    assert sample(after, "app_tasks_finished_total", model=name, status="succeeded") == 4
    assert sample(after, "app_tasks_finished_total", model=name, status="failed") == 1
    assert sample(after, "app_task_latency_seconds_count", model=name) == 5
    assert sample(after, "app_task_run_seconds_count", model=name) == 5
    assert sample(after, "app_queue_messages", model=name, state="ready") == 0
    assert sample(after, "app_dead_letter_messages", model=name) is not None
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
