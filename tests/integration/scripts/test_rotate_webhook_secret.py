"""lua/rotate_webhook_secret.lua (app/accounts): the current secret becomes the previous."""

from __future__ import annotations

from app.accounts.users import ROTATE_WEBHOOK_SECRET
from tests.utils.lua import run


async def test_a_rotation_keeps_the_old_secret_as_previous(redis):
    await redis.hset("user", mapping={"password_hash": "h", "webhook_secret": "old"})
    assert await run(redis, ROTATE_WEBHOOK_SECRET, ["user"], ["new", "12.5"]) == 1
    fields = await redis.hgetall("user")
    assert fields[b"webhook_secret"] == b"new" and fields[b"webhook_previous"] == b"old"
    assert fields[b"webhook_rotated_at"] == b"12.5"


async def test_no_user__nothing_written(redis):
    assert await run(redis, ROTATE_WEBHOOK_SECRET, ["user"], ["new", "1"]) == 0
    assert not await redis.exists("user")
