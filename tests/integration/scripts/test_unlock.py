"""lua/unlock.lua (app/openai): a batch lock is given back only by its holder."""

from __future__ import annotations

from app.openai.batches import UNLOCK
from tests.utils.lua import run


async def test_the_holder_releases_its_lock(redis):
    await redis.set("lock", "me")
    assert await run(redis, UNLOCK, ["lock"], ["me"]) == 1
    assert not await redis.exists("lock")


async def test_another_workers_lock_stays(redis):
    await redis.set("lock", "other")
    assert await run(redis, UNLOCK, ["lock"], ["me"]) == 0
    assert await redis.get("lock") == b"other"
