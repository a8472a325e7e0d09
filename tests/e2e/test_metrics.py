"""The platform's /metrics on a real Serve instance: replicas report through the registry."""

from __future__ import annotations

from deployments.echo import Echo
from tests.utils.e2e import finish_all, submit_all, wait_for
from tests.utils.prometheus import sample


def test_metrics_follow_a_burst_and_a_deleted_model(http, auth, deploy_model):
    from ray import serve

    headers = auth()
    name = deploy_model(Echo, num_replicas=1)
    before = wait_for(
        lambda: (
            (text := http.get("/metrics").text)
            and sample(text, "app_live_model_info", model=name) == 1
            and text
        )
    )
    assert sample(before, "app_tasks_finished_total", model=name, status="succeeded") is None

    finish_all(http, headers, name, submit_all(http, headers, name, [str(i) for i in range(20)]))

    def moved():
        text = http.get("/metrics").text
        done = sample(text, "app_tasks_finished_total", model=name, status="succeeded")
        return text if done == 20 else None

    after = wait_for(moved, timeout=15)
    assert sample(after, "app_tasks_submitted_total", model=name) == 20
    assert sample(after, "app_task_latency_seconds_count", model=name) == 20
    assert sample(after, "app_task_run_seconds_count", model=name) == 20
    assert sample(after, "app_queue_messages", model=name, state="ready") == 0
    assert sample(after, "app_model_instances", model=name) == 1

    live = sample(after, "app_live_models")
    serve.delete(name)
    gone = http.get("/metrics").text
    assert sample(gone, "app_live_model_info", model=name) is None
    assert sample(gone, "app_live_models") == live - 1
    assert sample(gone, "app_tasks_finished_total", model=name, status="succeeded") == 20
