"""lua/take_lease.lua (app/sharing): a lease taken only below the limit, expired ones dropped."""

from __future__ import annotations

import time

from app.sharing.leases import TAKE_LEASE
from tests.utils.lua import run, text


async def take(redis, member, limit, field="", lease_s=60):
    return text(await run(redis, TAKE_LEASE, ["set", "limits"], [member, lease_s, limit, field]))


async def test_leases_are_taken_up_to_the_limit(redis):
    assert await take(redis, "a", 2) == [1, 1, "2"]
    assert await take(redis, "b", 2) == [1, 2, "2"]
    assert await take(redis, "c", 2) == [0, 2, "2"]


async def test_the_owners_override_wins_over_the_default(redis):
    await redis.hset("limits", "open_streams", 1)
    assert await take(redis, "a", 5, "open_streams") == [1, 1, "1"]
    assert await take(redis, "b", 5, "open_streams") == [0, 1, "1"]


async def test_expired_leases_make_room(redis):
    await redis.zadd("set", {"old": time.time() - 1})
    assert await take(redis, "new", 1) == [1, 1, "1"]
    assert await redis.zscore("set", "old") is None


async def test_a_negative_limit_is_no_limit(redis):
    for i in range(50):
        assert (await take(redis, f"m{i}", -1))[0] == 1
