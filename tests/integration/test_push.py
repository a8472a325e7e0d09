"""Results pushed to waiters: long-poll and server-sent events wake on the final write, with no
Redis polling, and survive a dropped subscriber connection."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from deployments.echo import Echo
from tests.utils.e2e import parse_events
from tests.utils.models import Progressing
from tests.utils.redis import kill_subscriber


async def submit(gateway, headers, name, body, **kwargs):
    response = await gateway.post(f"/models/{name}/tasks", json=body, headers=headers, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


async def until(condition, timeout=5.0):
    """Wait for `condition()` to hold, checking every few milliseconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_long_poll_is_held_and_wakes_on_the_final_write(gateway, user, deploy, services):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "wake"})
    poll = asyncio.create_task(
        gateway.get(
            f"/models/{name}/result", params={"task_id": task_id, "wait": 10}, headers=headers
        )
    )
    await until(lambda: services.notifications.watched == 1)
    await asyncio.sleep(0.3)
    assert not poll.done()  # held by the server, not answered at once
    reads_before = await _hgetall_calls(services)
    assert await model.drain() == 1
    finished = time.monotonic()
    response = await poll
    woke_after = time.monotonic() - finished
    assert response.status_code == 200
    assert response.json()["status"] == "succeeded" and response.json()["result"]["text"] == "wake"
    assert woke_after < 0.1, woke_after
    # One read of the final record, however long it waited: no polling.
    assert await _hgetall_calls(services) - reads_before <= 2
    assert services.notifications.watched == 0


async def _hgetall_calls(services) -> int:
    stats = await services.store.redis.info("commandstats")
    return int(stats.get("cmdstat_hgetall", {}).get("calls", 0))


async def test_long_poll_times_out_with_202(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "slow"})
    started = time.monotonic()
    response = await gateway.get(
        f"/models/{name}/result", params={"task_id": task_id, "wait": 0.5}, headers=headers
    )
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert 0.5 <= time.monotonic() - started < 2


async def test_many_waiters_on_one_task_share_one_subscription(gateway, user, deploy, services):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "shared"})
    polls = [
        asyncio.create_task(
            gateway.get(
                f"/models/{name}/result", params={"task_id": task_id, "wait": 10}, headers=headers
            )
        )
        for _ in range(50)
    ]
    await until(lambda: _waiters(services) == 50)
    assert services.notifications.watched == 1
    await model.drain()
    responses = await asyncio.gather(*polls)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["result"]["text"] for r in responses} == {"shared"}


async def test_a_burst_of_final_writes_wakes_its_waiters_in_slices(gateway, user, deploy, services):
    """Thousands of waiters woken at once must not hold the event loop: they are handed their
    records `WAKE_SLICE` at a time, with a loop turn for other requests in between."""
    import contextlib

    from app.push.notifications import WAKE_SLICE

    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    tasks, per_task = 6, WAKE_SLICE // 2
    ids = [await submit(gateway, headers, name, {"text": str(i)}) for i in range(tasks)]
    hub = services.notifications
    async with contextlib.AsyncExitStack() as stack:
        watches = [
            [await stack.enter_async_context(hub.watch(task_id)) for _ in range(per_task)]
            for task_id in ids
        ]
        # A burst, as when one read from Redis brings every task's final write.
        for task_id, group in zip(ids, watches, strict=True):
            record = group[0].record
            final = record.merged({"status": "succeeded", "seq": str(record.seq + 1)})
            hub._advance(hub._topics[task_id], final)

        def woken() -> int:
            return sum(not w._changes.empty() for group in watches for w in group)

        turns = []
        while woken() < tasks * per_task:
            await asyncio.sleep(0)  # one turn of the loop, as a new request would get
            turns.append(woken())
            assert len(turns) < 100, turns
        # Each turn woke at most a slice (whole tasks: a task's waiters share one answer).
        steps = [b - a for a, b in zip([0, *turns], turns, strict=False)]
        assert max(steps) <= WAKE_SLICE, steps
        assert sum(1 for s in steps if s) >= tasks * per_task // WAKE_SLICE, steps


def _waiters(services) -> int:
    return int(services.metrics.snapshot().get("app_long_poll_waiters", {}).get("", 0))


async def test_sse_delivers_every_state_in_order_then_ends(gateway, user, deploy, services):
    headers = await user()
    model = await deploy(Progressing())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "streamed", "delay_ms": 50})
    stream = asyncio.create_task(
        gateway.get(f"/models/{name}/tasks/{task_id}/events", headers=headers)
    )
    await until(lambda: services.notifications.watched == 1)
    await model.drain()
    response = await stream
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_events(response.text)
    kinds = [event["event"] for event in events]
    assert kinds == ["pending", "running", "progress", "progress", "succeeded"], kinds
    ids = [int(event["id"]) for event in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    documents = [json.loads(event["data"]) for event in events]
    assert documents[2]["progress"] == {"fraction": 0.5, "message": "halfway"}
    assert documents[-1]["result"] == {"text": "streamed", "replica": ""}
    assert documents[-1]["status"] == "succeeded"


async def test_sse_of_a_finished_task__one_event_and_resume_after_it(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "done"})
    await model.drain()
    events = parse_events(
        (await gateway.get(f"/models/{name}/tasks/{task_id}/events", headers=headers)).text
    )
    assert [e["event"] for e in events] == ["succeeded"]
    resumed = await gateway.get(
        f"/models/{name}/tasks/{task_id}/events",
        headers={**headers, "Last-Event-ID": events[0]["id"]},
    )
    assert resumed.status_code == 200 and parse_events(resumed.text) == []


async def test_an_idle_stream_gets_keep_alive_comments(gateway, user, deploy, services):
    services.settings.sse_keepalive_s = 0.1
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "later"})
    stream = asyncio.create_task(
        gateway.get(f"/models/{name}/tasks/{task_id}/events", headers=headers)
    )
    await until(lambda: services.notifications.watched == 1)
    await asyncio.sleep(0.5)  # idle: nothing happens to the task for several keep-alives
    await model.drain()
    text = (await stream).text
    assert text.count(": keep-alive\n\n") >= 3, text
    assert [e["event"] for e in parse_events(text)] == ["pending", "running", "succeeded"]


@pytest.mark.parametrize("last_event_id", ["abc", "-1", "9" * 70])
async def test_a_last_event_id_that_is_no_number_starts_over(gateway, user, deploy, last_event_id):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "done"})
    await model.drain()
    answer = await gateway.get(
        f"/models/{name}/tasks/{task_id}/events",
        headers={**headers, "Last-Event-ID": last_event_id},
    )
    if len(last_event_id) > 64:  # past the documented length: refused, not misread
        assert answer.status_code == 422
        return
    assert [e["event"] for e in parse_events(answer.text)] == ["succeeded"]


async def test_sse_and_result_routes__403_404(gateway, user, deploy):
    owner, other = await user(), await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = await submit(gateway, owner, name, {"text": "mine"})
    for path in (f"/models/{name}/tasks/{task_id}/events", f"/models/{name}/result"):
        params = {} if "events" in path else {"task_id": task_id}
        forbidden = await gateway.get(path, params=params, headers=other)
        assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    unknown = await gateway.get(f"/models/{name}/tasks/nope/events", headers=owner)
    assert unknown.status_code == 404 and unknown.json()["error"] == "task_not_found"
    wrong_model = await gateway.get(f"/models/other-model/tasks/{task_id}/events", headers=owner)
    assert wrong_model.status_code == 404


async def test_subscriber_connection_killed__no_waiter_stranded(
    gateway, user, deploy, services, redis
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    ids = [await submit(gateway, headers, name, {"text": f"k{i}"}) for i in range(5)]
    polls = [
        asyncio.create_task(
            gateway.get(
                f"/models/{name}/result", params={"task_id": i, "wait": 20}, headers=headers
            )
        )
        for i in ids
    ]
    await until(lambda: services.notifications.watched == 5)
    reconnects = services.notifications.reconnects
    # Kill the subscriber's connection, and finish the tasks while it is down, so their
    # notifications are lost.
    assert await kill_subscriber(redis, services.settings.redis_prefix) == 1
    assert await model.drain() == 5
    started = time.monotonic()
    responses = await asyncio.gather(*polls)
    assert [r.status_code for r in responses] == [200] * 5
    assert [r.json()["result"]["text"] for r in responses] == [f"k{i}" for i in range(5)]
    # Woken by the re-read after resubscribing, long before their 20 s deadline.
    assert time.monotonic() - started < 5
    assert services.notifications.reconnects > reconnects
