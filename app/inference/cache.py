"""`ResultCache`: answers to identical requests, kept in Redis for a model's `cache_ttl_s`.

The key is the model's name, its descriptor fingerprint and version, and a digest of the
request's deterministic protobuf serialization: the JSON and the protobuf form of one message
hit the same entry, and a new schema or version starts afresh. Only successes are stored, and
entries larger than a bound are not stored at all; the TTL bounds the memory.
"""

from __future__ import annotations

import hashlib

from redis.asyncio import Redis

from app.core.redis_scripts import store_errors
from app.tasks.shapes import CachedResult

__all__ = ["CachedResult", "ResultCache"]


class ResultCache:
    """Args:
    redis: the Redis client.
    prefix: key prefix shared with the result store.
    max_entry_bytes: a result larger than this (protobuf plus JSON) is not cached.
    """

    def __init__(self, redis: Redis, *, prefix: str, max_entry_bytes: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.max_entry_bytes = max_entry_bytes

    def key(self, model: str, fingerprint: str, version: str, payload: bytes) -> str:
        """The entry of one request (`payload`: its deterministic serialization)."""
        digest = hashlib.sha256(payload).hexdigest()
        return f"{self.prefix}:cache:{model}:{fingerprint}:{version}:{digest}"

    async def get_many(self, keys: list[str]) -> list[CachedResult | None]:
        with store_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(key, "result", "result_json")
                rows = await pipe.execute()
        return [
            CachedResult(result, json.decode()) if result is not None and json is not None else None
            for result, json in rows
        ]

    async def put(self, key: str, entry: CachedResult, ttl_s: float) -> bool:
        """Store a success; False (nothing stored) when it is larger than the bound."""
        if len(entry.result) + len(entry.result_json) > self.max_entry_bytes:
            return False
        with store_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"result": entry.result, "result_json": entry.result_json})
                pipe.expire(key, max(1, int(ttl_s)))
                await pipe.execute()
        return True
