"""lua/add_chunk.lua (app/streaming): the next chunk of a running task, appended and published."""

from __future__ import annotations

from app.streaming.chunks import ADD_CHUNK
from tests.utils.lua import run

KEYS = ["chunks", "task", "events"]


async def add(redis, number, data='{"text":"a"}'):
    return await run(redis, ADD_CHUNK, KEYS, [number, data, 60])


async def test_chunks_of_a_running_task_are_appended_in_order_and_published(redis):
    await redis.hset("task", "status", "running")
    pubsub = redis.pubsub()
    await pubsub.subscribe("events")
    await pubsub.get_message(timeout=1)
    assert await add(redis, 1) == 1
    assert await add(redis, 2, '{"text":"b"}') == 1
    assert await redis.lrange("chunks", 0, -1) == [b'{"text":"a"}', b'{"text":"b"}']
    assert await redis.hget("task", "chunks") == b"2"
    message = await pubsub.get_message(timeout=1)
    assert message["data"] == b'{"chunk":1,"data":{"text":"a"}}'
    await pubsub.aclose()


async def test_a_chunk_written_before_is_not_written_again(redis):
    await redis.hset("task", "status", "running")
    await add(redis, 1)
    assert await add(redis, 1, '{"text":"retried"}') == 0
    assert await redis.llen("chunks") == 1


async def test_a_gap_or_a_task_not_running_writes_nothing(redis):
    await redis.hset("task", "status", "running")
    assert await add(redis, 2) == -1
    await redis.hset("task", "status", "succeeded")
    assert await add(redis, 1) == -1
    assert not await redis.exists("chunks")
