"""Token buckets in Redis: one atomic step per take, on Redis's clock, shared by every replica.

`lua/includes/bucket.lua` is a Lua function other scripts include (the submit path takes its
token in the same script that creates the tasks, one round trip); `TokenBuckets` runs it alone.
A bucket holds up to `burst` tokens and refills at `rate` per second; a take of `cost` tokens
succeeds or says how long until it would. A rate below 0 means no limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.redis_scripts import ScriptBatcher, load_script, store_errors

TAKE_TOKENS = load_script(__file__, "take_tokens")


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
                TAKE_TOKENS, [f"{self._prefix}:{name}"], [repr(rate), repr(burst), repr(cost)]
            )
        return BucketTake.parse(raw)
