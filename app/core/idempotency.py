"""Idempotency keys: a submit repeated with the same key gets the first submit's task ids."""

from __future__ import annotations

import hashlib
import json

from redis.asyncio import Redis

from app.core.store import StoreError, store_errors


class KeyReused(ValueError):
    """The key was used before for a different request."""


class IdempotencyKeys:
    """Per-user keys in Redis, each remembering a request digest and its task ids.

    Args:
        redis: the Redis client.
        prefix: key prefix shared with the result store.
        ttl_s: how long a key is remembered (the result retention: a repeat after that would
            find no task anyway).
    """

    def __init__(self, redis: Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s

    def _key(self, owner: str, key: str) -> str:
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return f"{self.prefix}:idempotency:{owner}:{digest}"

    async def claim(
        self, owner: str, key: str, digest: str, task_ids: list[str]
    ) -> list[str] | None:
        """Claim `key` for a request; None when claimed, else the earlier request's task ids.

        Raises:
            KeyReused: the key belongs to a request with another digest.
            StoreError: Redis is unavailable.
        """
        value = json.dumps({"digest": digest, "task_ids": task_ids})
        name = self._key(owner, key)
        with store_errors():
            for _ in range(2):  # the earlier claim may be released between SET and GET
                if await self.redis.set(name, value, nx=True, ex=self.ttl_s):
                    return None
                existing = await self.redis.get(name)
                if existing is not None:
                    break
            else:
                raise StoreError("idempotency key changed hands twice while being claimed")
        earlier = json.loads(existing)
        if earlier["digest"] != digest:
            raise KeyReused(
                "this Idempotency-Key was already used with a different request; use a new key"
            )
        return list(earlier["task_ids"])

    async def release(self, owner: str, key: str) -> None:
        """Forget a claim whose request was not accepted, so a retry may go through."""
        with store_errors():
            await self.redis.delete(self._key(owner, key))
