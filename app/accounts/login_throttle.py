"""`LoginThrottle`: failed logins slow the guesser down, never lock the owner out.

Every attempt is counted, atomically and before its password is checked, so parallel guesses
cannot slip between a check and a count. Two scopes each hold a count and the time of the last
attempt: the login as tried from one client address, and the client address over all logins.
Past its threshold a scope makes the next attempt wait, doubling per attempt up to a cap; an
attempt made too early is refused (429 with Retry-After) and counted too, so hammering only
lengthens the hammerer's own wait. A successful login clears its login-and-address scope and
takes its own attempt back from the address scope.

Nothing here is keyed by the login alone: a stranger's guesses from their address slow that
address down, while the owner logs in from theirs as usual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.redis_scripts import ScriptBatcher, load_script, store_errors

LOGIN_ATTEMPT = load_script(__file__, "login_attempt")
LOGIN_SUCCEEDED = load_script(__file__, "login_succeeded")


@dataclass(frozen=True)
class LoginPolicy:
    """Thresholds and delays of the throttle."""

    per_login_and_address: int = 5
    per_address: int = 50
    base_delay_s: float = 1.0
    max_delay_s: float = 900.0
    # Counts of a scope without attempts for this long are forgotten.
    window_s: int = 900


class LoginThrottle:
    """Counts login attempts per login-and-address and per address, in Redis."""

    def __init__(self, redis: Redis, *, prefix: str, policy: LoginPolicy) -> None:
        self._redis = redis
        self._batch = ScriptBatcher(redis)
        self._prefix = prefix
        self._policy = policy

    def _keys(self, login: str, address: str) -> list[str]:
        return [
            f"{self._prefix}:login-attempts:{login}@{address}",
            f"{self._prefix}:login-attempts:@{address}",
        ]

    async def attempt(self, login: str, address: str) -> float:
        """Count an attempt; return 0 when it may go ahead, else the seconds to wait.

        Raises:
            StoreError: Redis is unreachable.
        """
        policy = self._policy
        args = [
            "-",
            policy.window_s,
            repr(policy.base_delay_s),
            repr(policy.max_delay_s),
            policy.per_login_and_address,
            policy.per_address,
        ]
        with store_errors():
            raw = await self._batch.call(LOGIN_ATTEMPT, self._keys(login, address), args)
        return float(raw.decode() if isinstance(raw, bytes) else raw)

    async def succeeded(self, login: str, address: str) -> None:
        """The password was right: forget this login's failures from this address."""
        with store_errors():
            await self._batch.call(LOGIN_SUCCEEDED, self._keys(login, address), [])

    async def attempts(self, login: str, address: str) -> int:
        """Attempts counted for `login` from `address` in the current window."""
        with store_errors():
            raw = await self._redis.hget(self._keys(login, address)[0], "n")  # type: ignore[misc,unused-ignore]
        return int(raw or 0)


def retry_after(wait_s: float) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil(wait_s))
