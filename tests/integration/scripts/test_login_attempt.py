"""lua/login_attempt.lua (app/accounts): every attempt counted, waits doubling past a threshold."""

from __future__ import annotations

from app.accounts.login_throttle import LOGIN_ATTEMPT
from tests.utils.lua import run


async def attempt(redis, thresholds=(2, 100), base=1.0, cap=900):
    keys = ["login@addr", "addr"]
    return float(await run(redis, LOGIN_ATTEMPT, keys, ["-", 900, base, cap, *thresholds]))


async def test_attempts_below_the_threshold_go_ahead_and_are_counted(redis):
    assert await attempt(redis) == 0
    assert await attempt(redis) == 0
    assert await redis.hget("login@addr", "n") == b"2" and await redis.hget("addr", "n") == b"2"


async def test_past_the_threshold_each_attempt_waits_twice_as_long(redis):
    for _ in range(2):
        await attempt(redis)
    assert 0.9 < await attempt(redis) <= 1.0
    assert 1.9 < await attempt(redis) <= 2.0  # counted even though it came too early
    assert 3.9 < await attempt(redis) <= 4.0


async def test_the_wait_never_exceeds_the_cap(redis):
    for _ in range(30):
        wait = await attempt(redis, cap=5)
    assert wait <= 5


async def test_the_address_scope_slows_every_login_from_it(redis):
    await redis.hset("addr", mapping={"n": 100, "last": 9e9})
    assert await attempt(redis) > 0
