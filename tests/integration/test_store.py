"""ResultStore on real Redis: checked transitions, published changes, batching, scripts lost."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from app.core.lifecycle import FINAL_STATES, TRANSITIONS, TaskStatus
from app.tasks.shapes import PendingTask

START = {"attempt": 1, "model": "m", "owner": "u", "created_at": 1.0}


def pending(task_id, **fields):
    return PendingTask(task_id=task_id, model="m", owner="u", created_at=time.time(), **fields)


async def test_final_state_is_never_overwritten(store):
    await store.create_pending([pending("t1")])
    assert (await store.start("t1", **START)).status is TaskStatus.RUNNING
    assert (await store.succeed("t1", result=b"r", result_json="{}", attempts=1)).written
    late = await store.fail("t1", error="late", error_code="x", attempts=2)
    assert not late.written and late.status is TaskStatus.SUCCEEDED
    again = await store.start("t1", **{**START, "attempt": 2})
    assert not again.written and again.status is TaskStatus.SUCCEEDED
    record = await store.get("t1")
    assert record.status is TaskStatus.SUCCEEDED and record.result == b"r"
    assert record.document().error is None and record.seq == 3


def test_no_transition_leaves_a_final_state():
    for target, sources in TRANSITIONS.items():
        assert not sources & {s.value for s in FINAL_STATES}, target


async def test_every_write_is_published_with_its_sequence_number(store, redis):
    await store.create_pending([pending("p1")])
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.events_channel("p1"))
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    await store.start("p1", **START)
    await store.progress("p1", fraction=0.5, message="half")
    await store.succeed("p1", result=b"r", result_json='{"a":1}', attempts=1)
    events = []
    while len(events) < 3:
        message = await pubsub.get_message(timeout=2)
        assert message is not None, events
        if message["type"] == "message":
            events.append(store.parse_event(message["data"]))
    await pubsub.aclose()
    assert [(e["seq"], e["status"]) for e in events] == [
        ("2", "running"),
        ("3", "running"),
        ("4", "succeeded"),
    ]
    assert events[1]["progress"] == "0.5" and events[1]["progress_message"] == "half"
    assert "result" not in events[2] and "result_json" not in events[2]  # re-read, not pushed


async def test_cancel_pending_at_once__replica_then_skips_it(store):
    await store.create_pending([pending("c1")])
    outcome = await store.request_cancel("c1", "m")
    assert outcome.transition.written and outcome.transition.status is TaskStatus.CANCELLED
    started = await store.start("c1", **START)
    assert not started.written and started.status is TaskStatus.CANCELLED


async def test_cancel_running__flagged_then_any_outcome_becomes_cancelled(store, redis):
    await store.create_pending([pending("c2")])
    await store.start("c2", **START)
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.cancel_channel("m"))
    await pubsub.get_message(timeout=1)
    outcome = await store.request_cancel("c2", "m")
    assert outcome.requested and not outcome.transition.written
    message = await pubsub.get_message(timeout=2)
    assert message["data"] == b"c2"
    await pubsub.aclose()
    # The replica never heard it and finished: the result is not stored, the task is cancelled.
    finished = await store.succeed("c2", result=b"r", result_json="{}", attempts=1)
    assert finished.written and finished.status is TaskStatus.CANCELLED
    record = await store.get("c2")
    assert record.result is None and record.status is TaskStatus.CANCELLED


async def test_cancel_finished__nothing_changes(store):
    await store.create_pending([pending("c3")])
    await store.start("c3", **START)
    await store.succeed("c3", result=b"r", result_json="{}", attempts=1)
    outcome = await store.request_cancel("c3", "m")
    assert not outcome.transition.written and not outcome.requested
    assert outcome.transition.status is TaskStatus.SUCCEEDED


async def test_deadline__expired_on_start_and_by_the_gateway_only_when_due(store):
    await store.create_pending([pending("d1", deadline=time.time() - 1)])
    started = await store.start("d1", **START)
    assert started.written and started.status is TaskStatus.EXPIRED
    record = await store.get("d1")
    assert record.document().error_code == "deadline_exceeded"

    await store.create_pending([pending("d2", deadline=time.time() + 60)])
    early = await store.expire_if_due("d2")
    assert not early.written and (await store.get("d2")).status is TaskStatus.PENDING

    await store.create_pending([pending("d3", deadline=time.time() - 1)])
    due = await store.expire_if_due("d3")
    assert due.written and due.status is TaskStatus.EXPIRED


async def test_deadline_does_not_expire_a_task_already_tried(store):
    await store.create_pending([pending("d4", deadline=time.time() + 0.2)])
    await store.start("d4", **START)
    await store.requeue("d4", attempts=1, error="boom")
    await asyncio.sleep(0.3)
    assert not (await store.expire_if_due("d4")).written
    assert (await store.start("d4", **{**START, "attempt": 2})).status is TaskStatus.RUNNING


async def test_not_accepted__failed_and_a_late_delivery_is_skipped(store):
    await store.create_pending([pending("n1")])
    assert (await store.not_accepted("n1", reason="no confirm")).status is TaskStatus.FAILED
    started = await store.start("n1", **START)
    assert not started.written and started.status is TaskStatus.FAILED
    assert (await store.get("n1")).document().error_code == "not_accepted"


async def test_webhook_url_handed_on_when_final_until_delivered(store):
    await store.create_pending([pending("w1", webhook_url="http://127.0.0.1:1/hook")])
    await store.start("w1", **START)
    done = await store.succeed("w1", result=b"r", result_json="{}", attempts=1)
    assert done.webhook_url == "http://127.0.0.1:1/hook"
    # A redelivery of the finished task hands it on again (its delivery may not be queued)...
    assert (await store.start("w1", **START)).webhook_url == "http://127.0.0.1:1/hook"
    await store.update_webhook("w1", status="delivered", attempts=1)
    # ... but not once delivered.
    assert (await store.start("w1", **START)).webhook_url is None
    assert not await store.update_webhook("gone", status="failed")
    assert await store.get("gone") is None


async def test_user_index__newest_first_paged_per_model(store):
    now = time.time()
    tasks = [
        PendingTask(task_id=f"i{n}", model="a" if n % 2 else "b", owner="u", created_at=now + n)
        for n in range(5)
    ]
    await store.create_pending(tasks)
    first = await store.task_ids("u", model=None, before=None, count=2)
    assert [i for i, _ in first] == ["i4", "i3"]
    rest = await store.task_ids("u", model=None, before=first[-1][::-1], count=10)
    assert [i for i, _ in rest] == ["i2", "i1", "i0"]
    only_a = await store.task_ids("u", model="a", before=None, count=10)
    assert [i for i, _ in only_a] == ["i3", "i1"]
    assert await store.task_ids("other", model=None, before=None, count=10) == []


async def test_concurrent_writes_are_batched_and_each_gets_its_answer(store, monkeypatch):
    pipelines = []
    execute = store._batch._execute

    async def counted(calls):
        pipelines.append(len(calls))
        return await execute(calls)

    monkeypatch.setattr(store._batch, "_execute", counted)
    ids = [f"b{i}" for i in range(50)]
    started = await asyncio.gather(*(store.start(i, **START) for i in ids))
    # Fifty writes of one tick went to Redis together: one pipeline, not fifty round trips.
    assert pipelines == [50], pipelines
    assert {t.status for t in started} == {TaskStatus.RUNNING}
    written = await asyncio.gather(
        *(store.succeed(i, result=i.encode(), result_json="{}", attempts=1) for i in ids)
    )
    assert all(t.written for t in written)
    assert (await store.get("b7")).result == b"b7"


async def test_scripts_reloaded_after_redis_forgot_them(store, redis):
    await store.start("s1", **START)
    await redis.script_flush()  # what a Redis restart does
    assert (await store.succeed("s1", result=b"x", result_json="{}", attempts=1)).written
    assert (await store.get("s1")).status is TaskStatus.SUCCEEDED
    assert 0 < await redis.ttl(store.key("s1")) <= store.ttl_s


@pytest.mark.parametrize("text", ["plain", 'quotes " and \\ and \n newline', "ünïcødé"])
async def test_published_text_round_trips(store, redis, text):
    await store.start("e1", **START)
    pubsub = redis.pubsub()
    await pubsub.subscribe(store.events_channel("e1"))
    await pubsub.get_message(timeout=1)
    await store.fail("e1", error=text, error_code="model_error", attempts=1)
    message = await pubsub.get_message(timeout=2)
    await pubsub.aclose()
    assert store.parse_event(message["data"])["error"] == text
    assert json.loads(message["data"])["status"] == "failed"
