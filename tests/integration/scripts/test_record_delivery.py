"""lua/record_delivery.lua (app/webhooks): an outcome goes only into an existing record."""

from __future__ import annotations

from app.webhooks.state import RECORD_DELIVERY
from tests.utils.lua import run


async def test_an_outcome_is_written_into_the_record(redis):
    await redis.hset("task", "status", "succeeded")
    assert await run(redis, RECORD_DELIVERY, ["task"], ["webhook_status", "delivered"]) == 1
    assert await redis.hget("task", "webhook_status") == b"delivered"


async def test_an_outcome_never_resurrects_an_expired_record(redis):
    assert await run(redis, RECORD_DELIVERY, ["task"], ["webhook_status", "failed"]) == 0
    assert not await redis.exists("task")
