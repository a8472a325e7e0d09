"""Results pushed, on a real Ray Serve: long-poll, server-sent events, cancel, webhooks,
idempotent submits, deadlines, a dropped subscriber, and hundreds of idle waiters."""

from __future__ import annotations

import concurrent.futures
import json
import time
from datetime import datetime

import httpx
import pytest
import standardwebhooks

from deployments.echo import MAX_DELAY_MS, Echo
from tests.utils.e2e import listed, parse_events, submit, wait_for, wait_result
from tests.utils.models import Counting, Progressing
from tests.utils.webhooks import Receiver


def result(http, headers, name, task_id, **params):
    return http.get(
        f"/models/{name}/result", params={"task_id": task_id, **params}, headers=headers
    )


def test_long_poll_wakes_within_100ms_of_completion(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Echo)
    lags = []
    for _ in range(5):
        task_id = submit(http, headers, name, {"text": "soon", "delay_ms": 500})
        response = result(http, headers, name, task_id, wait=10)
        received = time.time()
        assert response.status_code == 200
        finished = datetime.fromisoformat(response.json()["finished_at"]).timestamp()
        lags.append(received - finished)
    # The waiter was held through the model's 500 ms and answered right after the write.
    assert sorted(lags)[len(lags) // 2] < 0.1, lags


def test_sse_pending_running_progress_succeeded_in_order(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Progressing, overrides={"max_concurrency": 1})
    blocker = submit(http, headers, name, {"text": "first", "delay_ms": 1500})
    task_id = submit(http, headers, name, {"text": "streamed", "delay_ms": 300})
    with http.stream(
        "GET", f"/models/{name}/tasks/{task_id}/events", headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = parse_events(text)
    kinds = [event["event"] for event in events]
    assert kinds == ["pending", "running", "progress", "progress", "succeeded"], kinds
    documents = [json.loads(event["data"]) for event in events]
    assert documents[2]["progress"] == {"fraction": 0.5, "message": "halfway"}
    assert documents[-1]["result"]["text"] == "streamed"
    assert wait_result(http, headers, name, blocker)["status"] == "succeeded"


def test_sse_resumed_mid_stream_loses_and_repeats_nothing(http, auth, deploy_model):
    """A client reads the first events, drops the connection, and reconnects with the last id
    it saw: together the two streams hold every event once, in order."""
    headers = auth()
    name = deploy_model(Progressing, overrides={"max_concurrency": 1})
    # Behind another task, so the stream is open before this one starts and reports.
    submit(http, headers, name, {"text": "ahead", "delay_ms": 1000})
    task_id = submit(http, headers, name, {"text": "resumed", "delay_ms": 1500})
    first: list[dict[str, str]] = []
    with http.stream(
        "GET", f"/models/{name}/tasks/{task_id}/events", headers=headers, timeout=30
    ) as response:
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            first = parse_events(buffer.rsplit("\n\n", 1)[0] + "\n\n")
            if any(e["event"] == "progress" for e in first):
                break  # mid-stream: the model is still working
    assert first and first[-1]["event"] == "progress"
    with http.stream(
        "GET",
        f"/models/{name}/tasks/{task_id}/events",
        headers={**headers, "Last-Event-ID": first[-1]["id"]},
        timeout=30,
    ) as response:
        rest = parse_events("".join(response.iter_text()))
    ids = [int(e["id"]) for e in first + rest]
    assert ids == sorted(set(ids)), ids  # nothing repeated, in order
    assert ids == list(range(ids[0], ids[-1] + 1)), ids  # nothing lost
    kinds = [e["event"] for e in first + rest]
    # The first stream starts at the task's state then (pending, or running already).
    assert kinds[0] in ("pending", "running") and kinds[-1] == "succeeded", kinds
    assert "progress" in kinds and rest and rest[0]["event"] in ("progress", "succeeded")


def test_events_are_not_buffered_by_the_front_door(http, auth, deploy_model):
    """Through HAProxy (the ingress scripts/start.sh uses) each event reaches the client as it
    is written: the half-way report arrives while the model still works, seconds before the
    next event is written."""
    headers = auth()
    name = deploy_model(Progressing, overrides={"max_concurrency": 1})
    # The task waits behind another (one at a time), so its stream is open before it starts:
    # its half-way report is a change the stream sees happen, not part of the first event.
    submit(http, headers, name, {"text": "ahead", "delay_ms": 1500})
    task_id = submit(http, headers, name, {"text": "slow", "delay_ms": 3000})
    arrivals: list[tuple[float, str]] = []
    with http.stream(
        "GET", f"/models/{name}/tasks/{task_id}/events", headers=headers, timeout=30
    ) as response:
        buffer = ""
        for chunk in response.iter_text():
            buffer += chunk
            while "\n\n" in buffer:
                block, buffer = buffer.split("\n\n", 1)
                for event in parse_events(block + "\n\n"):
                    arrivals.append((time.monotonic(), event["event"]))
    kinds = [kind for _, kind in arrivals]
    assert kinds[0] == "pending" and kinds[-1] == "succeeded" and "progress" in kinds, kinds
    halfway = next(at for at, kind in arrivals if kind == "progress")
    assert arrivals[-1][0] - halfway > 2.0, arrivals  # it came while the model was working


def test_a_disconnected_event_stream_is_released(http, auth, deploy_model):
    """A client that goes away while its stream is idle gives back its subscription and its
    open-stream lease (its quota), not only when the task ends.

    Behind HAProxy the gateway learns of it from the stream's writes, events or the keep-alive
    comment (APP_SSE_KEEPALIVE_S, 15 s): HAProxy reads nothing more from a client whose
    request is complete, so it notices the close only when a write it forwards fails, the
    second after the close (the first draws the client's reset), and the stream stops at its
    write after that: about three intervals."""
    from app.core.settings import get_settings

    keepalive_s = get_settings().sse_keepalive_s
    headers = auth()
    name = deploy_model(Echo, overrides={"max_concurrency": 1})
    # The watched task waits behind another, then runs: it ends eight intervals or more later.
    longest = MAX_DELAY_MS
    assert longest >= 4 * keepalive_s * 1000
    ahead = submit(http, headers, name, {"text": "ahead", "delay_ms": longest})
    task_id = submit(http, headers, name, {"text": "long", "delay_ms": longest})

    def open_streams() -> int:
        return http.get("/account", headers=headers).json()["usage"]["open_streams"]

    with http.stream(
        "GET", f"/models/{name}/tasks/{task_id}/events", headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        events = response.iter_text()  # kept: dropping it would close the connection
        next(events)  # the first event arrived: the stream is open
        assert open_streams() == 1
        events.close()  # the client goes away while the task still runs
    # Three intervals, five with slack for a busy machine, before the task's end.
    wait_for(lambda: open_streams() == 0, timeout=5 * keepalive_s)
    for task in (task_id, ahead):
        http.delete(f"/models/{name}/tasks/{task}", headers=headers)


def test_cancel_pending__the_model_never_runs_it(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Counting, overrides={"max_concurrency": 1})
    busy = submit(http, headers, name, {"text": "busy", "delay_ms": 1500})
    wait_for(lambda: result(http, headers, name, busy).json()["status"] == "running")
    waiting = submit(http, headers, name, {"text": "never"})  # queued behind `busy`
    cancelled = http.delete(f"/models/{name}/tasks/{waiting}", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert wait_result(http, headers, name, busy)["result"]["replica"] == "calls=1"
    after = wait_result(http, headers, name, submit(http, headers, name, {"text": "after"}))
    # The replica received the cancelled task between these two and did not call the model.
    assert after["result"]["replica"] == "calls=2"
    assert result(http, headers, name, waiting).json()["status"] == "cancelled"
    again = http.delete(f"/models/{name}/tasks/{waiting}", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "task_finished"
    other = http.delete(f"/models/{name}/tasks/{busy}", headers=auth())
    assert other.status_code == 403


def test_cancel_running_echo__ends_cancelled(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Echo)
    task_id = submit(http, headers, name, {"text": "long", "delay_ms": 30_000})
    wait_for(lambda: result(http, headers, name, task_id).json()["status"] == "running")
    started = time.monotonic()
    response = http.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
    assert response.status_code == 202  # asked its replica (which may be done already)
    assert response.json()["status"] in ("running", "cancelled")
    final = result(http, headers, name, task_id, wait=15)
    assert final.status_code == 200 and final.json()["status"] == "cancelled"
    assert time.monotonic() - started < 10  # stopped in the replica, not run to its end
    # The replica is free again.
    assert (
        wait_result(http, headers, name, submit(http, headers, name, {"text": "next"}))["result"][
            "text"
        ]
        == "next"
    )


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def test_webhook__500_twice_then_delivered_signed(http, auth, deploy_model, receiver):
    receiver.statuses = [500, 500]
    headers = auth()
    name = deploy_model(Echo)
    accepted = http.post(
        f"/models/{name}/tasks",
        params={"callback_url": receiver.url},
        json={"text": "hooked"},
        headers=headers,
    )
    assert accepted.status_code == 202, accepted.text
    task_id = accepted.json()["task_id"]
    wait_for(
        lambda: result(http, headers, name, task_id).json()["webhook"]["status"] == "delivered",
        timeout=30,
    )
    assert [d.answered for d in receiver.deliveries] == [500, 500, 200]
    secret = http.get("/account/webhook-secret", headers=headers).json()["secret"]
    last = receiver.deliveries[-1]
    assert standardwebhooks.Webhook(secret).verify(last.body, last.headers)["result"]["text"] == (
        "hooked"
    )
    assert result(http, headers, name, task_id).json()["webhook"]["attempts"] == 3


def test_webhook_receiver_down__failed_after_retries_result_intact(http, auth, deploy_model):
    dead = Receiver()
    url = dead.url
    dead.close()
    headers = auth()
    name = deploy_model(Echo)
    task_id = http.post(
        f"/models/{name}/tasks",
        params={"callback_url": url},
        json={"text": "kept"},
        headers=headers,
    ).json()["task_id"]
    wait_for(
        lambda: result(http, headers, name, task_id).json()["webhook"]["status"] == "failed",
        timeout=30,
    )
    document = result(http, headers, name, task_id).json()
    assert document["status"] == "succeeded" and document["result"]["text"] == "kept"
    assert document["webhook"]["attempts"] == 3 and document["webhook"]["last_error"]


def test_same_idempotency_key_twice__one_task_one_run(http, auth, deploy_model):
    headers = {**auth(), "Idempotency-Key": "retry-after-timeout"}
    name = deploy_model(Counting)
    first = http.post(f"/models/{name}/tasks", json={"text": "once"}, headers=headers)
    second = http.post(f"/models/{name}/tasks", json={"text": "once"}, headers=headers)
    assert first.json()["task_id"] == second.json()["task_id"]
    assert wait_result(http, headers, name, first.json()["task_id"])["result"]["replica"] == (
        "calls=1"
    )
    later = {k: v for k, v in headers.items() if k != "Idempotency-Key"}
    assert (
        wait_result(http, later, name, submit(http, later, name, {"text": "x"}))["result"][
            "replica"
        ]
        == "calls=2"
    )


def test_deadline_passed__expired_never_run(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Counting, overrides={"max_concurrency": 1})
    busy = submit(http, headers, name, {"text": "busy", "delay_ms": 1500})
    late = http.post(
        f"/models/{name}/tasks",
        params={"deadline_s": 0.3},
        json={"text": "late"},
        headers=headers,
    ).json()["task_id"]
    document = result(http, headers, name, late, wait=10).json()
    assert document["status"] == "expired" and document["error_code"] == "deadline_exceeded"
    assert wait_result(http, headers, name, busy)["result"]["replica"] == "calls=1"
    after = wait_result(http, headers, name, submit(http, headers, name, {"text": "after"}))
    assert after["result"]["replica"] == "calls=2"


def test_subscriber_connection_killed__no_waiter_stranded(http, auth, deploy_model):
    import redis

    from app.core.settings import get_settings
    from tests.conftest import REDIS_URL

    headers = auth()
    name = deploy_model(Echo)
    ids = [submit(http, headers, name, {"text": f"k{i}", "delay_ms": 1500}) for i in range(4)]
    settings = get_settings()
    client = redis.Redis.from_url(REDIS_URL)
    connection = f"{settings.redis_prefix}:task-notifications"

    channels = [f"{settings.redis_prefix}:events:{task_id}" for task_id in ids]

    def kill_when_watched():
        # Once every waiter below is subscribed (each task's channel has its subscriber).
        wait_for(lambda: all(n >= 1 for _, n in client.pubsub_numsub(*channels)), timeout=20)
        names = [c for c in client.client_list() if c.get("name") == connection]
        for c in names:
            client.execute_command("CLIENT", "KILL", "ID", c["id"])
        return len(names)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        killer = pool.submit(kill_when_watched)
        polls = list(pool.map(lambda i: result(http, headers, name, i, wait=25), ids))
    assert killer.result() >= 1
    assert [p.status_code for p in polls] == [200] * 4
    assert [p.json()["result"]["text"] for p in polls] == [f"k{i}" for i in range(4)]


def test_300_idle_waiters__submits_flow_no_503(http, auth, deploy_model, gateway_url):
    headers = auth()
    name = deploy_model(Echo)
    slow = submit(http, headers, name, {"text": "slow", "delay_ms": 25_000})
    statuses: list[int] = []

    def wait_once(_: int) -> int:
        with httpx.Client(base_url=gateway_url, timeout=60) as client:
            return result(client, headers, name, slow, wait=30).status_code

    with concurrent.futures.ThreadPoolExecutor(300) as pool:
        waiters = [pool.submit(wait_once, i) for i in range(300)]
        wait_for(lambda: _long_poll_waiters(http) >= 300, timeout=20, interval=0.5)
        submits = [
            http.post(f"/models/{name}/tasks", json={"text": f"s{i}"}, headers=headers)
            for i in range(20)
        ]
        statuses = [w.result() for w in waiters]
    assert [s.status_code for s in submits] == [202] * 20
    assert statuses == [200] * 300
    assert name in listed(http, headers)


def _long_poll_waiters(http) -> float:
    from tests.utils.prometheus import sample

    http.get("/metrics")  # pushes this replica's gauges
    return sample(http.get("/metrics").text, "app_long_poll_waiters") or 0.0
