"""Token buckets in Redis: one atomic step per take, on Redis's clock, shared by every replica.

`BUCKET_LUA` is a Lua function other scripts include (the submit path takes its token
in the same script that creates the tasks, one round trip); `TokenBuckets` runs it alone.
A bucket holds up to `burst` tokens and refills at `rate` per second; a take of `cost` tokens
succeeds or says how long until it would. A rate below 0 means no limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.redis_batch import LuaScript, ScriptBatcher, store_errors

# take_tokens(key, rate, burst, cost, now) -> {allowed (1|0), tokens left, seconds to wait}
# Numbers go back as strings: Redis truncates Lua numbers to integers.
BUCKET_LUA = """
local function take_tokens(key, rate, burst, cost, now)
  if rate < 0 then return {1, '-1', '0'} end
  local state = redis.call('HMGET', key, 't', 'ts')
  local tokens = tonumber(state[1]) or burst
  local stamp = tonumber(state[2]) or now
  if rate > 0 then tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate) end
  local allowed = 1
  local wait = 0
  if tokens < cost then
    allowed = 0
    if rate > 0 then wait = (cost - tokens) / rate else wait = 3600 end
  else
    tokens = tokens - cost
  end
  redis.call('HSET', key, 't', tostring(tokens), 'ts', tostring(now))
  local ttl = 3600
  if rate > 0 then ttl = math.ceil(burst / rate) + 1 end
  redis.call('EXPIRE', key, ttl)
  return {allowed, string.format('%.3f', tokens), string.format('%.3f', wait)}
end
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

_TAKE = LuaScript(
    BUCKET_LUA
    + """
return take_tokens(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), redis_now())
"""
)


@dataclass(frozen=True)
class BucketTake:
    """What taking from a bucket found."""

    allowed: bool
    remaining: float  # tokens left (-1: no limit)
    wait_s: float  # until the take would succeed (0 when allowed)

    @classmethod
    def parse(cls, raw: list[object]) -> BucketTake:
        allowed, remaining, wait = raw
        return cls(
            allowed=bool(int(str(allowed))),
            remaining=float(_text(remaining)),
            wait_s=float(_text(wait)),
        )

    @property
    def retry_after_s(self) -> int:
        """Whole seconds for a Retry-After header (at least 1)."""
        return max(1, math.ceil(self.wait_s))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TokenBuckets:
    """Buckets under one key prefix (e.g. registrations per client address)."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._batch = ScriptBatcher(redis)
        self._prefix = prefix

    async def take(self, name: str, *, rate: float, burst: float, cost: float = 1) -> BucketTake:
        """Take `cost` tokens from the bucket `name`.

        Raises:
            StoreError: Redis is unreachable.
        """
        with store_errors():
            raw = await self._batch.call(
                _TAKE, [f"{self._prefix}:{name}"], [repr(rate), repr(burst), repr(cost)]
            )
        return BucketTake.parse(raw)
