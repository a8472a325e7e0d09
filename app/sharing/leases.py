"""`Leases`: counting what a user holds open (event streams, long-polls, webhook deliveries)
across every gateway and webhook replica.

A lease is a member of a Redis sorted set scored by its expiry. Taking one first drops the
expired members, then adds itself only while the set holds fewer than the limit (the owner's
override, or the default), in one atomic step on Redis's clock. The holder renews its leases
every third of their life (`renew_forever`) and removes them when done; a replica that dies
without removing them stops renewing, and they lapse within `lease_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis

from app.core.redis_scripts import ScriptBatcher, StoreError, load_script, store_errors

logger = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0

TAKE_LEASE = load_script(__file__, "take_lease")
RENEW_LEASES = load_script(__file__, "renew_leases")


class LeaseRefused(Exception):  # noqa: N818 - an outcome
    """The set already holds `limit` leases."""

    def __init__(self, held: int, limit: int) -> None:
        super().__init__(f"{held} of {limit} held")
        self.held = held
        self.limit = limit


@dataclass(frozen=True)
class LeaseKind:
    """One thing leases count: its Redis name, and the limits-hash field overriding its limit
    ('' when it has no per-user override, e.g. deliveries per receiving host)."""

    name: str
    limit_field: str = ""


OPEN_STREAMS = LeaseKind("streams", "open_streams")
WEBHOOKS_IN_FLIGHT = LeaseKind("webhooks", "webhooks_in_flight")
WEBHOOKS_PER_HOST = LeaseKind("webhook-host")


class Leases:
    """Leases of one process, renewed in the background while held.

    Args:
        redis: the platform's Redis.
        prefix: its key prefix.
        lease_s: how long a lease outlives a holder that stopped renewing it.
    """

    def __init__(self, redis: Redis, *, prefix: str, lease_s: float = DEFAULT_LEASE_S) -> None:
        self._redis = redis
        self._batch = ScriptBatcher(redis)
        self._prefix = prefix
        self.lease_s = lease_s
        # Set key -> members this process holds there.
        self._held: dict[str, set[str]] = {}

    def key(self, kind: LeaseKind, subject: str) -> str:
        return f"{self._prefix}:leases:{kind.name}:{subject}"

    def limits_key(self, owner: str) -> str:
        return f"{self._prefix}:limits:{owner}"

    async def take(self, kind: LeaseKind, subject: str, *, default_limit: int) -> str:
        """Take a lease of `kind` for `subject` (a login, a host); return its id.

        Raises:
            LeaseRefused: `subject` already holds its limit.
            StoreError: Redis is unreachable.
        """
        member = uuid.uuid4().hex
        key = self.key(kind, subject)
        with store_errors():
            raw = await self._batch.call(
                TAKE_LEASE,
                [key, self.limits_key(subject)],
                [member, repr(self.lease_s), default_limit, kind.limit_field],
            )
        taken, held, limit = int(raw[0]), int(raw[1]), int(float(_text(raw[2])))
        if not taken:
            raise LeaseRefused(held, limit)
        self._held.setdefault(key, set()).add(member)
        return member

    async def give_back(self, kind: LeaseKind, subject: str, member: str) -> None:
        """Remove a lease (a failure to reach Redis leaves it to lapse)."""
        key = self.key(kind, subject)
        members = self._held.get(key)
        if members is not None:
            members.discard(member)
            if not members:
                del self._held[key]
        try:
            with store_errors():
                await self._redis.zrem(key, member)
        except StoreError as exc:
            logger.warning("a lease of %s lapses by itself: %s", key, exc)

    @contextlib.asynccontextmanager
    async def holding(
        self, kind: LeaseKind, subject: str, *, default_limit: int
    ) -> AsyncIterator[None]:
        """Hold a lease for the duration of the block."""
        member = await self.take(kind, subject, default_limit=default_limit)
        try:
            yield
        finally:
            await self.give_back(kind, subject, member)

    async def count(self, kind: LeaseKind, subject: str) -> int:
        """Leases of `kind` that `subject` holds now (over every replica)."""
        key = self.key(kind, subject)
        with store_errors():
            clock = await self._redis.time()
            return int(await self._redis.zcount(key, clock[0] + clock[1] / 1e6, "+inf"))

    async def renew(self) -> None:
        """Extend every lease this process holds by `lease_s`."""
        for key, members in list(self._held.items()):
            if members:
                with store_errors():
                    await self._batch.call(RENEW_LEASES, [key], [repr(self.lease_s), *members])

    async def renew_forever(self) -> None:
        """Renew held leases every third of their life (run as a background task)."""
        while True:
            await asyncio.sleep(self.lease_s / 3)
            try:
                await self.renew()
            except StoreError as exc:
                logger.warning("renewing leases failed (they lapse unless renewed): %s", exc)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
