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
from tests.utils.e2e import (
    finish_all,
    listed,
    submit,
    submit_all,
    task_writes,
    unacked,
    wait_for,
    when,
)


def _replica_pids(http, headers, name: str) -> set[int]:
    """The process ids of the model's replicas, from who answered a few quick tasks."""
    accepted = submit_all(http, headers, name, [f"who-{i}" for i in range(40)])
    documents = finish_all(http, headers, name, accepted)
    return {int(d["result"]["replica"].rsplit(":", 1)[1]) for d in documents}


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_replica_sigkilled_holding_work__its_tasks_redelivered_all_500_succeed(
    http, auth, deploy_model
):
    headers = auth()
    name = deploy_model(Echo, num_replicas=2)
    wait_for(lambda: listed(http, headers)[name]["instances"] == 2)
    pids: set[int] = set()
    for _ in range(5):
        pids = _replica_pids(http, headers, name)
        if len(pids) == 2:
            break
    assert len(pids) == 2, pids
    victim = min(pids)
    accepted: dict[str, str] = {}

    def submit_in_batches() -> None:
        # Batches of 50: the backlog forms at once, however fast single submits are today.
        for start in range(0, 500, 50):
            texts = [f"kill-{i}" for i in range(start, start + 50)]
            answer = http.post(
                f"/models/{name}/batches",
                json=[{"text": t, "delay_ms": 300} for t in texts],
                headers=headers,
            )
            assert answer.status_code == 202, answer.text
            accepted.update(zip(answer.json()["task_ids"], texts, strict=True))

    submitter = threading.Thread(target=submit_in_batches)
    submitter.start()
    # Each replica holds at most 16 unacked deliveries: more than 16 unacked means both,
    # the victim included, are in the middle of tasks.
    wait_for(lambda: unacked(name) > 20, timeout=60, interval=0.1)
    os.kill(victim, signal.SIGKILL)
    submitter.join()
    assert len(accepted) == 500
    finish_all(http, headers, name, accepted)
    starts = task_writes(list(accepted))
    redelivered = [task for task, seq in starts.items() if seq > 3]
    assert redelivered, "no task was running on the killed replica"
    assert len(redelivered) <= 16, len(redelivered)


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")
def test_rabbitmq_restart__503_during_outage_then_accepted_again_nothing_lost(
    http, auth, deploy_model
):
    """The broker's application is stopped and started (`rabbitmqctl stop_app/start_app`).

    Not a `kill -9` of the broker: every component of this session shares the machine's one
    RabbitMQ, whose service layout (data directory, Erlang cookie, restart) belongs to the
    machine, not to this test; what a dead broker does to clients (connection refused,
    robust reconnects, unacked messages back to the queue) is what stop_app produces too,
    and messages are persistent on durable queues either way.
    """
    headers = auth()
    name = deploy_model(Echo, num_replicas=1)
    accepted: dict[str, str] = {}
    accepted_at: dict[str, float] = {}
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
            except httpx.HTTPError as exc:  # a transport error is not an answer
                unexpected.append(repr(exc))
                continue
            if response.status_code == 202:
                accepted[response.json()["task_id"]] = text
                accepted_at[response.json()["task_id"]] = time.monotonic()
            elif response.status_code == 503 and int(response.headers.get("Retry-After", 0)) > 0:
                refused += 1
            else:
                unexpected.append(f"{response.status_code} {response.text}")
            time.sleep(0.02)

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        wait_for(lambda: len(accepted) > 20)
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True, timeout=60)
        wait_for(lambda: refused > 0, timeout=30)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True, timeout=120)
    back_at = time.monotonic()
    # Submissions are accepted again once the gateway's connection is back.
    wait_for(lambda: any(at > back_at for at in accepted_at.values()), timeout=60)
    after = sum(1 for at in accepted_at.values() if at > back_at)
    wait_for(lambda: sum(1 for at in accepted_at.values() if at > back_at) > after + 10)
    stop.set()
    thread.join()
    assert not unexpected, unexpected[:5]
    assert refused > 0, "the outage should have refused some submissions"
    finish_all(http, headers, name, accepted)


def test_redeploy_during_a_stream_of_tasks_loses_nothing(http, auth, deploy_model):
    from ray import serve

    from deployments.sdk import build_app

    headers = auth()
    name = deploy_model(Echo, num_replicas=1)

    def replica_ids() -> set[str]:
        body = http.get(f"/models/{name}", headers=headers).json()
        return {r["replica_id"] for r in body.get("replicas", [])}

    before = wait_for(replica_ids)
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
        # Every replica was replaced while tasks kept coming: the new ones, none of the old.
        after = wait_for(
            lambda: when(replica_ids(), lambda ids: len(ids) == 2 and not ids & before),
            timeout=60,
        )
        during = len(accepted)
        wait_for(lambda: len(accepted) > during + 10, timeout=30)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert len(accepted) > 20 and len(after) == 2
    finish_all(http, headers, name, accepted)
