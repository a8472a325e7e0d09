"""lua/take_tokens.lua (app/sharing): a token bucket on Redis's clock."""

from __future__ import annotations

from app.sharing.ratelimit import TAKE_TOKENS
from tests.utils.lua import run, text


async def take(redis, rate, burst, cost=1):
    return text(await run(redis, TAKE_TOKENS, ["b"], [rate, burst, cost]))


async def test_a_full_bucket_gives_until_empty_then_says_how_long_to_wait(redis):
    assert await take(redis, 1, 2) == [1, "1.000", "0.000"]
    assert await take(redis, 1, 2) == [1, "0.000", "0.000"]
    refused = await take(redis, 1, 2)
    assert refused[0] == 0 and 0.9 < float(refused[2]) <= 1.0


async def test_a_cost_above_the_tokens_is_refused_and_takes_nothing(redis):
    assert (await take(redis, 1, 3, cost=5))[0] == 0
    assert (await take(redis, 1, 3, cost=3))[0] == 1


async def test_a_negative_rate_is_no_limit_and_keeps_no_key(redis):
    for _ in range(100):
        assert await take(redis, -1, 1) == [1, "-1", "0"]
    assert not await redis.exists("b")


async def test_the_bucket_expires_once_it_would_be_full_again(redis):
    await take(redis, 10, 20)
    assert 0 < await redis.ttl("b") <= 3
