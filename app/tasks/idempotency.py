"""Idempotency keys: a submit repeated with the same key gets the first submit's task ids.

A key is claimed *in progress* before the submit's tasks are made, and marked *done* once
they are accepted; a failed submit releases it. A repeat that finds the key in progress waits
a moment for the outcome, then gives up (409 with Retry-After, as the IETF Idempotency-Key
draft says): it never hands out ids of tasks that do not exist yet, or were refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

from redis.asyncio import Redis

from app.core.redis_scripts import store_errors


class KeyReused(ValueError):
    """The key was used before for a different request."""


class KeyInProgress(Exception):  # noqa: N818 - what the caller found
    """The request that claimed the key is still being processed."""


# An in-progress claim lapses after this long, should its submit never say how it ended.
IN_PROGRESS_TTL_S = 60
# How long a repeat waits for an in-progress request's outcome, and how often it looks.
WAIT_FOR_OUTCOME_S = 2.0
LOOK_EVERY_S = 0.02


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
        """Claim `key` for a request; None when claimed (call `complete` or `release` after),
        else the task ids of the earlier request with that key, once it is done.

        Raises:
            KeyReused: the key belongs to a request with another digest.
            KeyInProgress: the earlier request is still being processed after a short wait.
            StoreError: Redis is unavailable.
        """
        claim = json.dumps({"digest": digest, "task_ids": task_ids, "state": "in_progress"})
        name = self._key(owner, key)
        deadline = time.monotonic() + WAIT_FOR_OUTCOME_S
        while True:
            with store_errors():
                if await self.redis.set(name, claim, nx=True, ex=IN_PROGRESS_TTL_S):
                    return None
                existing = await self.redis.get(name)
            if existing is None:
                continue  # released meanwhile: the earlier request failed; try to claim it
            earlier = json.loads(existing)
            if earlier["digest"] != digest:
                raise KeyReused(
                    "this Idempotency-Key was already used with a different request; use a new key"
                )
            if earlier.get("state", "done") == "done":
                return list(earlier["task_ids"])
            if time.monotonic() > deadline:
                raise KeyInProgress("a request with this Idempotency-Key is still in progress")
            await asyncio.sleep(LOOK_EVERY_S)

    async def complete(self, owner: str, key: str, digest: str, task_ids: list[str]) -> None:
        """The claiming request's tasks are accepted: a repeat gets their ids from now on."""
        done = json.dumps({"digest": digest, "task_ids": task_ids, "state": "done"})
        with store_errors():
            await self.redis.set(self._key(owner, key), done, ex=self.ttl_s)

    async def release(self, owner: str, key: str) -> None:
        """Forget a claim whose request was not accepted, so a retry may go through."""
        with store_errors():
            await self.redis.delete(self._key(owner, key))
