"""Real faults on a real Serve instance: a replica SIGKILLed, RabbitMQ restarted, a redeploy.

Every task accepted (202) must end `succeeded` with its own result; none lost, none stuck.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import httpx
import pytest

from deployments.echo import Echo
from tests.utils.e2e import finish_all, listed, submit, submit_all, wait_for, wait_result


def test_replica_sigkilled_mid_run__all_500_tasks_succeed(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Echo, num_replicas=2)
    wait_for(lambda: listed(http, headers)[name]["instances"] == 2)
    accepted = submit_all(http, headers, name, [f"kill-{i}" for i in range(500)], delay_ms=30)
    ids = list(accepted)

    # Find a replica through a finished task's answer ("host:pid") and kill its process.
    first = wait_result(http, headers, name, ids[0])
    pid = int(first["result"]["replica"].rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)

    finish_all(http, headers, name, accepted)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_rabbitmq_restart__503_during_outage_and_nothing_accepted_is_lost(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Echo, num_replicas=1)
    accepted: dict[str, str] = {}
    refused = 0
    unexpected: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        nonlocal refused
        i = 0
        while not stop.is_set():
            text = f"mq-{i}"
            i += 1
            try:
                response = http.post(
                    f"/models/{name}/tasks", json={"text": text}, headers=headers, timeout=30
                )
            except httpx.HTTPError:
                refused += 1
                continue
            if response.status_code == 202:
                accepted[response.json()["task_id"]] = text
            elif response.status_code == 503 and "Retry-After" in response.headers:
                refused += 1
            else:
                unexpected.append(f"{response.status_code} {response.text}")
            time.sleep(0.02)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        time.sleep(2)
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        time.sleep(4)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    # Submissions succeed again once the gateway's connection is back.
    wait_for(lambda: len(accepted) and http.get("/health/ready").status_code == 200, timeout=60)
    time.sleep(3)
    stop.set()
    thread.join()
    assert not unexpected, unexpected[:5]
    assert refused > 0, "the outage should have refused some submissions"
    assert len(accepted) > 20
    finish_all(http, headers, name, accepted)


def test_redeploy_during_a_stream_of_tasks_loses_nothing(http, auth, deploy_model):
    from ray import serve

    from deployments.sdk import build_app

    headers = auth()
    name = deploy_model(Echo, num_replicas=1)
    accepted: dict[str, str] = {}
    stop = threading.Event()

    errors: list[BaseException] = []

    def stream() -> None:
        i = 0
        while not stop.is_set():
            text = f"redeploy-{i}"
            i += 1
            try:
                task_id = submit(http, headers, name, {"text": text, "delay_ms": 50})
            except BaseException as exc:  # surfaced by the test below
                errors.append(exc)
                return
            accepted[task_id] = text
            time.sleep(0.01)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        time.sleep(2)
        # Changed options replace every replica (a rolling update of the model).
        serve.run(
            build_app(Echo, model_name=name, num_replicas=2, ray_actor_options={"num_cpus": 0}),
            name=name,
            route_prefix=None,
        )
        time.sleep(2)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(accepted) > 20
    finish_all(http, headers, name, accepted)
