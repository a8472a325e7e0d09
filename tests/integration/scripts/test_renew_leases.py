"""lua/renew_leases.lua (app/sharing): held leases are pushed back, lapsed ones stay gone."""

from __future__ import annotations

import time

from app.sharing.leases import RENEW_LEASES
from tests.utils.lua import run


async def test_held_leases_get_a_new_expiry(redis):
    await redis.zadd("set", {"a": time.time() + 1})
    await run(redis, RENEW_LEASES, ["set"], [30, "a"])
    assert await redis.zscore("set", "a") > time.time() + 25


async def test_a_lease_that_lapsed_and_was_dropped_is_not_revived(redis):
    await redis.zadd("set", {"a": time.time() + 1})
    await run(redis, RENEW_LEASES, ["set"], [30, "a", "gone"])
    assert await redis.zscore("set", "gone") is None
    assert await redis.zcard("set") == 1
