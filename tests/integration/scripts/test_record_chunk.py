"""lua/record_chunk.lua (app/openai): a batch chunk's tasks recorded once, by its turn's owner."""

from __future__ import annotations

from app.openai.batches import RECORD_CHUNK
from tests.utils.lua import run

KEYS = ["batch", "batch:tasks", "batch:open"]


async def test_a_chunk_starting_where_dispatch_stands_is_recorded(redis):
    await redis.hset("batch", mapping={"dispatched": 2, "chunk": "x"})
    assert await run(redis, RECORD_CHUNK, KEYS, [2, 60, "t3", "t4"]) == 2
    assert await redis.lrange("batch:tasks", 0, -1) == [b"t3", b"t4"]
    assert await redis.smembers("batch:open") == {b"t3", b"t4"}
    assert await redis.hget("batch", "dispatched") == b"4"
    assert not await redis.hexists("batch", "chunk")


async def test_a_chunk_recorded_already_is_not_recorded_twice(redis):
    await redis.hset("batch", "dispatched", 4)
    assert await run(redis, RECORD_CHUNK, KEYS, [2, 60, "t3", "t4"]) == 0
    assert not await redis.exists("batch:tasks")
