"""Admission: a submit's limits checked, its token taken, its tasks created and routed, all in
one atomic step (`lua/admit.lua`); a synchronous call's token from the same bucket."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from app.core.redis_scripts import ScriptBatcher, load_script, store_errors
from app.sharing.fair_share import FairShareKeys, Priority
from app.tasks.records import TaskRecords
from app.tasks.shapes import PendingTask, decoded, field_args, now

ADMIT = load_script(__file__, "admit")
TAKE_CALL = load_script(__file__, "take_call")


@dataclass(frozen=True)
class SubmitLimits:
    """An owner's default limits at submit (the admin's overrides, kept in Redis, win).
    A negative number means no limit."""

    submits_per_s: float
    submit_burst: float
    active_tasks: int
    max_priority: Priority


@dataclass(frozen=True)
class Admission:
    """What admitting a submit decided.

    `refused` is None when every task was created; then `routes` says, per task, 'd' (into
    the work queue) or 'h' (into the owner's hold queue). Otherwise it names the limit hit:
    'priority' (`highest` is the level allowed), 'active' (`count` of `quota` tasks queued or
    running), or 'rate' (`wait_s` until a token, of a bucket `burst` deep refilling at
    `rate` per second).
    """

    refused: str | None
    routes: str = ""
    tokens_left: float = -1.0
    highest: Priority = Priority.HIGH
    count: int = 0
    quota: int = -1
    wait_s: float = 0.0
    rate: float = -1.0
    burst: float = -1.0

    @classmethod
    def parse(cls, raw: list[Any]) -> Admission:
        text = [decoded(v) for v in raw]
        kind = text[0]
        if kind == "ok":
            return cls(
                refused=None,
                tokens_left=float(text[1]),
                routes=text[2],
                rate=float(text[3]),
                burst=float(text[4]),
            )
        if kind == "priority":
            return cls(refused=kind, highest=Priority.of_level(int(float(text[1]))))
        if kind == "active":
            return cls(refused=kind, count=int(text[1]), quota=int(float(text[2])))
        return cls(
            refused=kind,
            tokens_left=float(text[1]),
            wait_s=float(text[2]),
            rate=float(text[3]),
            burst=float(text[4]),
        )


class AdmissionStore:
    """Admits submits and synchronous calls against their owner's limits.

    Args:
        redis: the platform's Redis.
        batch: the pipeline the store's script calls go through.
        records: the task records (their key names).
        prefix: key prefix.
        ttl_s: lifetime of records and of the fair-share sets.
    """

    def __init__(
        self,
        redis: Redis,
        batch: ScriptBatcher,
        records: TaskRecords,
        *,
        prefix: str,
        ttl_s: int,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.fair = FairShareKeys(prefix)
        self._batch = batch
        self._records = records

    def limits_key(self, owner: str) -> str:
        """The admin's overrides of an owner's limits (a hash; absent fields: the defaults)."""
        return f"{self.prefix}:limits:{owner}"

    def bucket_key(self, owner: str) -> str:
        """The owner's submit token bucket."""
        return f"{self.prefix}:bucket:{owner}"

    async def admit(
        self,
        tasks: list[PendingTask],
        *,
        owner: str,
        model: str,
        limits: SubmitLimits,
        window: int,
        fair_share: bool,
        priority: Priority = Priority.NORMAL,
    ) -> Admission:
        """Check the owner's limits and take a submit token; if they allow it, create every
        task `pending` and route it (fair share), all in one atomic step and one round trip.

        Tasks answered from the cache are not given here (they are not queued).
        """
        keys = [
            self.bucket_key(owner),
            self.limits_key(owner),
            self.fair.released(model, owner),
            self.fair.held(model, owner),
            self.fair.holders(model),
        ]
        args: list[Any] = [
            self.ttl_s,
            repr(now() - self.ttl_s),
            len(tasks),
            repr(limits.submits_per_s),
            repr(limits.submit_burst),
            limits.active_tasks,
            window,
            int(fair_share),
            priority.level,
            limits.max_priority.level,
            owner,
        ]
        for task in tasks:
            keys += self._records.created_keys(task)
            pairs = task.fields()
            args += [task.task_id, repr(task.created_at), len(pairs)]
            args += field_args(pairs.items())
        with store_errors():
            raw = await self._batch.call(ADMIT, keys, args)
        return Admission.parse(raw)

    async def take_call(self, owner: str, limits: SubmitLimits) -> Admission:
        """A token from the owner's submit bucket for a synchronous call (no task made)."""
        with store_errors():
            raw = await self._batch.call(
                TAKE_CALL,
                [self.bucket_key(owner), self.limits_key(owner)],
                [repr(limits.submits_per_s), repr(limits.submit_burst)],
            )
        taken, left, wait, rate, burst = (decoded(v) for v in raw)
        return Admission(
            refused=None if int(taken) else "rate",
            tokens_left=float(left),
            wait_s=float(wait),
            rate=float(rate),
            burst=float(burst),
        )
