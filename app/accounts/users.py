"""`UserStore`: accounts in Redis (password hash, role, webhook secret); `AccountCache`."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from app.accounts.secrets import new_webhook_secret
from app.core.redis_scripts import ScriptBatcher, load_script, store_errors

ROLE_ADMIN = "admin"
ROLE_USER = "user"
ROLES = frozenset({ROLE_ADMIN, ROLE_USER})

ROTATE_WEBHOOK_SECRET = load_script(__file__, "rotate_webhook_secret")


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class UserStore:
    """Users keyed by login; creation is atomic (HSETNX), so one of two racing sign-ups wins.

    Args:
        redis: the Redis client.
        prefix: key prefix shared with the result store.
    """

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self._batch = ScriptBatcher(redis)

    def _user_key(self, login: str) -> str:
        return f"{self.prefix}:user:{login}"

    async def create(self, login: str, password_hash: str) -> bool:
        """Create the user; False when the login is taken."""
        with store_errors():
            created = await self.redis.hsetnx(self._user_key(login), "password_hash", password_hash)  # type: ignore[misc,unused-ignore]
        return bool(created)

    async def password_hash(self, login: str) -> str | None:
        with store_errors():
            raw = await self.redis.hget(self._user_key(login), "password_hash")  # type: ignore[misc,unused-ignore]
        return raw.decode() if isinstance(raw, bytes) else raw

    async def role(self, login: str) -> str | None:
        """The user's stored role ("admin" or "user"); None for an unknown login."""
        with store_errors():
            raw = await self.redis.hmget(self._user_key(login), ["password_hash", "role"])  # type: ignore[misc,unused-ignore]
        if raw[0] is None:
            return None
        role = raw[1]
        return (role.decode() if isinstance(role, bytes) else role) or ROLE_USER

    async def webhook_secrets(self, login: str, *, grace_s: float) -> list[str]:
        """The secrets the user's deliveries are signed with: the current one (made on first
        use) and, for `grace_s` after a rotation, the previous one. Empty: no such user."""
        key = self._user_key(login)
        with store_errors():
            raw = await self.redis.hmget(  # type: ignore[misc,unused-ignore]
                key, ["password_hash", "webhook_secret", "webhook_previous", "webhook_rotated_at"]
            )
        if raw[0] is None:
            return []
        current = _text(raw[1])
        if current is None:
            current = await self._create_webhook_secret(key)
        previous, rotated_at = _text(raw[2]), float(_text(raw[3]) or 0)
        if previous and time.time() - rotated_at < grace_s:
            return [current, previous]
        return [current]

    async def _create_webhook_secret(self, key: str) -> str:
        with store_errors():
            await self.redis.hsetnx(key, "webhook_secret", new_webhook_secret())  # type: ignore[misc,unused-ignore]
            stored = await self.redis.hget(key, "webhook_secret")  # type: ignore[misc,unused-ignore]
        return _text(stored) or ""

    async def rotate_webhook_secret(self, login: str) -> str | None:
        """Give the user a new signing secret, keeping the old one as `previous`; None when
        there is no such user."""
        key = self._user_key(login)
        secret = new_webhook_secret()
        with store_errors():
            rotated = await self._batch.call(
                ROTATE_WEBHOOK_SECRET, [key], [secret, repr(time.time())]
            )
        return secret if rotated else None

    async def logins(self, cursor: int, count: int) -> tuple[list[str], int]:
        """A page of registered logins (a Redis SCAN): the logins and the next cursor (0 at
        the end)."""
        prefix = self._user_key("")
        with store_errors():
            after, keys = await self.redis.scan(cursor, match=f"{prefix}*", count=count)
        logins = [(k.decode() if isinstance(k, bytes) else str(k))[len(prefix) :] for k in keys]
        return sorted(logins), int(after)

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


class AccountCache:
    """Whether a login still has an account, and its role, remembered for `ttl_s` seconds.

    A token is honoured only while its account exists: the gateway asks this on every
    authenticated request, and Redis at most once per login per `ttl_s` (a hash lookup, never a
    password hash). A demotion or a removed account takes effect within `ttl_s`.
    """

    MAX_ENTRIES = 100_000

    def __init__(self, users: UserStore, *, ttl_s: float) -> None:
        self._users = users
        self._ttl_s = ttl_s
        self._entries: dict[str, tuple[float, str | None]] = {}

    async def role(self, login: str) -> str | None:
        """The account's role, or None when there is no such account.

        Raises:
            StoreError: Redis is unreachable and nothing recent is known.
        """
        now = time.monotonic()
        entry = self._entries.get(login)
        if entry is not None and entry[0] > now:
            return entry[1]
        role = await self._users.role(login)
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        self._entries[login] = (now + self._ttl_s, role)
        return role

    def forget(self, login: str) -> None:
        """Drop what is remembered about `login` (after this process changed it)."""
        self._entries.pop(login, None)
