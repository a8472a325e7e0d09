"""ResultStore on real Redis: idempotent final writes, batching, scripts lost on restart."""

from __future__ import annotations

import asyncio

from app.core.tasks import TaskStatus


async def test_final_state_is_never_overwritten(store):
    await store.create_pending("t1", model="m", owner="u", created_at=1.0)
    assert (
        await store.mark_running("t1", attempt=1, model="m", owner="u", created_at=1.0) == "running"
    )
    assert await store.mark_succeeded("t1", result=b"r", result_json="{}", attempts=1)
    assert not await store.mark_failed("t1", error="late", error_code="x", attempts=2)
    assert await store.mark_running("t1", attempt=2, model="m", owner="u", created_at=1.0) == (
        TaskStatus.SUCCEEDED
    )
    record = await store.get("t1")
    assert record.status == "succeeded" and record.result == b"r" and record.error in ("", None)


async def test_concurrent_writes_are_batched_and_each_gets_its_answer(store):
    ids = [f"b{i}" for i in range(50)]
    statuses = await asyncio.gather(
        *(store.mark_running(i, attempt=1, model="m", owner="u", created_at=1.0) for i in ids)
    )
    assert statuses == ["running"] * 50
    written = await asyncio.gather(
        *(store.mark_succeeded(i, result=i.encode(), result_json="{}", attempts=1) for i in ids)
    )
    assert written == [True] * 50
    assert (await store.get("b7")).result == b"b7"


async def test_scripts_reloaded_after_redis_forgot_them(store, redis):
    await store.mark_running("s1", attempt=1, model="m", owner="u", created_at=1.0)
    await redis.script_flush()  # what a Redis restart does
    assert await store.mark_succeeded("s1", result=b"x", result_json="{}", attempts=1)
    assert (await store.get("s1")).status == "succeeded"
    assert 0 < await redis.ttl(store.key("s1")) <= store.ttl_s
