"""`UserStore`: accounts and failed-login counters in Redis."""

from __future__ import annotations

from redis.asyncio import Redis

from app.core.store import store_errors

ROLE_ADMIN = "admin"
ROLE_USER = "user"
ROLES = frozenset({ROLE_ADMIN, ROLE_USER})


class UserStore:
    """Users keyed by login; creation is atomic (HSETNX), so one of two racing sign-ups wins.

    Args:
        redis: the Redis client.
        prefix: key prefix shared with the result store.
        lockout_window_s: how long failed logins are remembered.
    """

    def __init__(self, redis: Redis, *, prefix: str, lockout_window_s: int = 300) -> None:
        self.redis = redis
        self.prefix = prefix
        self.lockout_window_s = lockout_window_s

    def _user_key(self, login: str) -> str:
        return f"{self.prefix}:user:{login}"

    def _failures_key(self, login: str) -> str:
        return f"{self.prefix}:login-failures:{login}"

    async def create(self, login: str, password_hash: str) -> bool:
        """Create the user; False when the login is taken."""
        with store_errors():
            created = await self.redis.hsetnx(self._user_key(login), "password_hash", password_hash)  # type: ignore[misc,unused-ignore]
        return bool(created)

    async def password_hash(self, login: str) -> str | None:
        with store_errors():
            raw = await self.redis.hget(self._user_key(login), "password_hash")  # type: ignore[misc,unused-ignore]
        return raw.decode() if isinstance(raw, bytes) else raw

    async def failures(self, login: str) -> int:
        with store_errors():
            raw = await self.redis.get(self._failures_key(login))
        return int(raw or 0)

    async def record_failure(self, login: str) -> None:
        key = self._failures_key(login)
        with store_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, self.lockout_window_s)
                await pipe.execute()

    async def clear_failures(self, login: str) -> None:
        with store_errors():
            await self.redis.delete(self._failures_key(login))

    async def role(self, login: str) -> str | None:
        """The user's stored role ("admin" or "user"); None for an unknown login."""
        with store_errors():
            raw = await self.redis.hmget(self._user_key(login), ["password_hash", "role"])  # type: ignore[misc,unused-ignore]
        if raw[0] is None:
            return None
        role = raw[1]
        return (role.decode() if isinstance(role, bytes) else role) or ROLE_USER

    async def set_role(self, login: str, role: str) -> bool:
        """Give an existing user a role; False when there is no such user."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {sorted(ROLES)}, not {role!r}")
        key = self._user_key(login)
        with store_errors():
            if not await self.redis.hexists(key, "password_hash"):  # type: ignore[misc,unused-ignore]
                return False
            await self.redis.hset(key, "role", role)  # type: ignore[misc,unused-ignore]
        return True
