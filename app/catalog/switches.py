"""`ModelSwitches`: which models an admin disabled, kept in Redis so every gateway replica
(and a restarted one) sees the same flags."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from app.core.redis_scripts import store_errors


@dataclass(frozen=True)
class Disabled:
    """Who disabled a model, when (epoch seconds) and why."""

    by: str
    at: float
    reason: str


class ModelSwitches:
    """Disabled flags per model, read through a short cache (`cache_s`) on the submit path."""

    def __init__(self, redis: Redis, *, prefix: str, cache_s: float = 1.0) -> None:
        self._redis = redis
        self._key = f"{prefix}:disabled-models"
        self._cache_s = cache_s
        self._cached: dict[str, Disabled] = {}
        self._read_at = float("-inf")

    async def disable(self, model: str, *, by: str, reason: str) -> Disabled:
        flag = Disabled(by=by, at=time.time(), reason=reason)
        with store_errors():
            await self._redis.hset(self._key, model, json.dumps(asdict(flag)))  # type: ignore[misc,unused-ignore]
        self._read_at = float("-inf")
        return flag

    async def enable(self, model: str) -> bool:
        """Clear the flag; False when the model was not disabled."""
        with store_errors():
            removed = await self._redis.hdel(self._key, model)  # type: ignore[misc,unused-ignore]
        self._read_at = float("-inf")
        return bool(removed)

    async def disabled(self) -> dict[str, Disabled]:
        """Every disabled model's flag (at most `cache_s` old)."""
        if time.monotonic() - self._read_at < self._cache_s:
            return self._cached
        with store_errors():
            raw = await self._redis.hgetall(self._key)  # type: ignore[misc,unused-ignore]
        self._cached = {
            (name.decode() if isinstance(name, bytes) else name): Disabled(**json.loads(value))
            for name, value in raw.items()
        }
        self._read_at = time.monotonic()
        return self._cached

    async def get(self, model: str) -> Disabled | None:
        return (await self.disabled()).get(model)
