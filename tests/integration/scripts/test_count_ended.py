"""lua/count_ended.lua (app/openai): each ended task of a batch counted once."""

from __future__ import annotations

from app.openai.batches import COUNT_ENDED
from tests.utils.lua import run


async def test_ended_tasks_are_counted_once_whoever_sees_them(redis):
    await redis.sadd("open", "a", "b")
    args = ["a", "completed", "b", "failed"]
    assert await run(redis, COUNT_ENDED, ["batch", "open"], args) == 2
    assert await run(redis, COUNT_ENDED, ["batch", "open"], args) == 0
    assert await redis.hgetall("batch") == {b"completed": b"1", b"failed": b"1"}
