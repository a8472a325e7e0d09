"""lua/login_succeeded.lua (app/accounts): a success clears its scope, gives its attempt back."""

from __future__ import annotations

from app.accounts.login_throttle import LOGIN_SUCCEEDED
from tests.utils.lua import run


async def test_the_login_scope_is_cleared_and_the_address_count_goes_down_by_one(redis):
    await redis.hset("login@addr", "n", 3)
    await redis.hset("addr", "n", 7)
    await run(redis, LOGIN_SUCCEEDED, ["login@addr", "addr"], [])
    assert not await redis.exists("login@addr")
    assert await redis.hget("addr", "n") == b"6"


async def test_an_address_count_reaching_zero_is_removed(redis):
    await redis.hset("addr", "n", 1)
    await run(redis, LOGIN_SUCCEEDED, ["login@addr", "addr"], [])
    assert not await redis.exists("addr")


async def test_no_address_count__none_is_created(redis):
    await run(redis, LOGIN_SUCCEEDED, ["login@addr", "addr"], [])
    assert not await redis.exists("addr")
