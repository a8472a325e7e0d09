"""Secrets the platform makes itself: the token signing key, and users' webhook secrets.

`SigningKey` is the key access tokens are signed with, made once and shared through Redis.

No key is written in the repository or a shipped file. An operator may set one
(`APP_JWT_SECRET`); otherwise the first gateway replica to need it makes a random one and
stores it with `SET NX`, so every replica, and every restart, uses that same key and tokens
stay valid across them. A token signed with any other key (an old built-in development value
included) does not verify.
"""

from __future__ import annotations

import asyncio
import base64
import secrets

from redis.asyncio import Redis

from app.core.redis_scripts import store_errors

# 48 random bytes, URL-safe: far above HS256's 32-byte minimum.
GENERATED_KEY_BYTES = 48
# A webhook secret in the Standard Webhooks form: `whsec_` + base64 of 32 random bytes.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
WEBHOOK_SECRET_BYTES = 32


def new_webhook_secret() -> str:
    """A fresh webhook signing secret (`whsec_<base64>`, as Standard Webhooks names them)."""
    return (
        WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode()
    )


class SigningKey:
    """The token signing key: the configured one, or the platform's own from Redis.

    Args:
        redis: where a generated key is kept.
        prefix: the platform's Redis key prefix.
        configured: `APP_JWT_SECRET`, when set.
    """

    def __init__(self, redis: Redis, *, prefix: str, configured: str | None = None) -> None:
        self._redis = redis
        self._key_name = f"{prefix}:secret:jwt"
        self._value = configured
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """The key, fetched (or made) once per process.

        Raises:
            StoreError: Redis is unreachable and the key is not known yet.
        """
        if self._value is not None:
            return self._value
        async with self._lock:
            if self._value is None:
                self._value = await self._get_or_create()
        return self._value

    async def _get_or_create(self) -> str:
        candidate = secrets.token_urlsafe(GENERATED_KEY_BYTES)
        with store_errors():
            # SET NX GET: one round trip that either stores ours or returns the one there is.
            existing = await self._redis.set(self._key_name, candidate, nx=True, get=True)
        if existing is None:
            return candidate
        return existing.decode() if isinstance(existing, bytes) else str(existing)
