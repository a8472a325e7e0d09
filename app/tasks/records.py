"""`TaskRecords`: task records in Redis, one hash per task, every write a checked transition.

Every state write goes through one script (`lua/transition.lua`) that, in one atomic step,
checks the write is a transition `app.core.lifecycle.TRANSITIONS` allows, writes it, bumps the
task's sequence number and publishes the change on the task's channel (the gateway's waiters
listen there). A final state is the source of no transition, so a redelivered task can never
overwrite a result.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from redis.asyncio import Redis

from app.core.lifecycle import (
    ERROR_NOT_ACCEPTED,
    NO_RECORD,
    TaskRecord,
    TaskStatus,
    allowed_sources,
)
from app.core.redis_scripts import ScriptBatcher, load_script, store_errors
from app.tasks.shapes import (
    CancelOutcome,
    PendingTask,
    Transition,
    decoded,
    field_args,
    now,
)

CREATE = load_script(__file__, "create")
TRANSITION = load_script(__file__, "transition")
REQUEST_CANCEL = load_script(__file__, "request_cancel")

PROGRESS_SOURCES = " running "
# An admin's replay of a dead letter reopens a failed task: the one write whose source is a
# final state, made only by that explicit action (a pending one is a replay done again).
REPLAY_SOURCES = f" {NO_RECORD} {TaskStatus.FAILED} {TaskStatus.PENDING} "


class TaskRecords:
    """Reads and writes task records.

    Args:
        redis: a `redis.asyncio.Redis` client (not decoding responses: results are bytes).
        batch: the pipeline every script call of the store goes through.
        prefix: key prefix, so several deployments or test runs can share a database.
        ttl_s: lifetime of every record, refreshed on each write.
    """

    def __init__(self, redis: Redis, batch: ScriptBatcher, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._batch = batch

    # ---- names ----------------------------------------------------------------------

    def key(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def events_channel(self, task_id: str) -> str:
        """Where every change of the task is published (a JSON object of the written fields)."""
        return f"{self.prefix}:events:{task_id}"

    def cancel_channel(self, model: str) -> str:
        """Where the replicas of `model` hear which running task to cancel."""
        return f"{self.prefix}:cancel:{model}"

    def user_index(self, owner: str, model: str | None = None) -> str:
        """A sorted set of the owner's task ids (score: creation time), optionally per model."""
        base = f"{self.prefix}:tasks-of:{owner}"
        return base if model is None else f"{base}:{model}"

    def created_keys(self, task: PendingTask) -> list[str]:
        """The keys a new task's record touches: its hash, channel and owner's indexes."""
        return [
            self.key(task.task_id),
            self.events_channel(task.task_id),
            self.user_index(task.owner),
            self.user_index(task.owner, task.model),
        ]

    # ---- writes ---------------------------------------------------------------------

    async def write(
        self,
        task_id: str,
        target: TaskStatus,
        published: Mapping[str, Any],
        stored: Mapping[str, Any] | None = None,
        *,
        flags: str = "",
        sources: str | None = None,
    ) -> Transition:
        """One checked transition to `target` (see `lua/transition.lua` for the flags)."""
        args: list[Any] = [
            self.ttl_s,
            target.value,
            sources or allowed_sources(target),
            repr(now()),
            flags or "-",
            len(published),
            self.prefix,
            task_id,
            *field_args((*published.items(), *(stored or {}).items())),
        ]
        with store_errors():
            raw = await self._batch.call(
                TRANSITION, [self.key(task_id), self.events_channel(task_id)], args
            )
        return Transition.parse(raw)

    async def create_pending(self, tasks: list[PendingTask]) -> None:
        """Record submitted tasks as `pending` (before they are published) and index them
        per owner; the writes of one submit go to Redis as one pipeline. A task with a
        `cached` answer is created `succeeded` instead, and is not to be published."""
        oldest = repr(now() - self.ttl_s)

        async def create(task: PendingTask) -> None:
            status = TaskStatus.SUCCEEDED if task.cached is not None else TaskStatus.PENDING
            args: list[Any] = [
                self.ttl_s,
                repr(task.created_at),
                task.task_id,
                oldest,
                status.value,
                *field_args(task.fields().items()),
            ]
            with store_errors():
                await self._batch.call(CREATE, self.created_keys(task), args)

        await asyncio.gather(*(create(task) for task in tasks))

    async def start(
        self,
        task_id: str,
        *,
        attempt: int,
        model: str,
        owner: str,
        created_at: float,
        version: str = "0",
    ) -> Transition:
        """A replica takes the task: `running`, unless it is final, was cancelled while it
        waited, or is past its deadline (then `cancelled` or `expired`, and not to be run)."""
        return await self.write(
            task_id,
            TaskStatus.RUNNING,
            {"started_at": now(), "attempts": attempt, "model_version": version},
            {"model": model, "owner": owner, "created_at": created_at},
            flags="cd",
        )

    async def succeed(
        self, task_id: str, *, result: bytes, result_json: str, attempts: int, chunks: int = 0
    ) -> Transition:
        """Store the result (or `cancelled`, if a cancel came while it ran); a streaming
        model's final state names how many chunks it wrote."""
        published: dict[str, Any] = {
            "finished_at": now(),
            "attempts": attempts,
            "error": "",
            "error_code": "",
        }
        if chunks:
            published["chunks"] = chunks
        return await self.write(
            task_id,
            TaskStatus.SUCCEEDED,
            published,
            {"result": result, "result_json": result_json},
            flags="c",
        )

    async def fail(self, task_id: str, *, error: str, error_code: str, attempts: int) -> Transition:
        """Store a failure with its error text (or `cancelled`, if a cancel came meanwhile)."""
        return await self.write(
            task_id,
            TaskStatus.FAILED,
            {"finished_at": now(), "error": error, "error_code": error_code, "attempts": attempts},
            flags="c",
        )

    async def requeue(self, task_id: str, *, attempts: int, error: str) -> Transition:
        """Back to `pending` after a failed attempt, keeping that attempt's error."""
        return await self.write(
            task_id, TaskStatus.PENDING, {"attempts": attempts, "error": error}, flags="c"
        )

    async def cancelled(self, task_id: str) -> Transition:
        """A replica stopped the task on a cancel request."""
        return await self.write(task_id, TaskStatus.CANCELLED, {"finished_at": now()})

    async def expire_if_due(self, task_id: str) -> Transition:
        """`expired` if the task is pending, never started and past its deadline."""
        return await self.write(task_id, TaskStatus.EXPIRED, {}, flags="d")

    async def not_accepted(self, task_id: str, *, reason: str) -> Transition:
        """The broker did not confirm the submit: the task is failed, so a copy that did reach
        the queue is acknowledged without running."""
        return await self.write(
            task_id,
            TaskStatus.FAILED,
            {"finished_at": now(), "error": reason, "error_code": ERROR_NOT_ACCEPTED},
        )

    async def replay(self, task_id: str) -> Transition:
        """An admin sends a dead-lettered task back to its queue: `pending` again from
        `failed` (or from a record that expired), attempts reset, the old error cleared."""
        return await self.write(
            task_id,
            TaskStatus.PENDING,
            {"attempts": 0, "error": "", "error_code": "", "finished_at": ""},
            sources=REPLAY_SOURCES,
            flags="j",  # back into its owner's window: it goes straight to the work queue
        )

    async def progress(self, task_id: str, *, fraction: float, message: str) -> Transition:
        """A running model's progress report (no state change; published like one)."""
        return await self.write(
            task_id,
            TaskStatus.RUNNING,
            {"progress": fraction, "progress_message": message},
            sources=PROGRESS_SOURCES,
        )

    async def request_cancel(self, task_id: str, model: str) -> CancelOutcome:
        """Cancel a pending task at once; flag a running one and tell its model's replicas."""
        with store_errors():
            raw = await self._batch.call(
                REQUEST_CANCEL,
                [self.key(task_id), self.events_channel(task_id), self.cancel_channel(model)],
                [self.ttl_s, repr(now()), task_id, self.prefix],
            )
        # 1: cancelled now; 2: running, its replica asked; 0: nothing to cancel.
        code = int(raw[0])
        return CancelOutcome(
            transition=Transition.parse([int(code == 1), *raw[1:]]), requested=code == 2
        )

    # ---- reads ----------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskRecord | None:
        with store_errors():
            raw: dict[Any, Any] = await self.redis.hgetall(self.key(task_id))  # type: ignore[misc,unused-ignore]
        return TaskRecord.from_hash(task_id, raw)

    async def get_many(self, task_ids: list[str]) -> list[TaskRecord | None]:
        with store_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                for task_id in task_ids:
                    pipe.hgetall(self.key(task_id))
                raws = await pipe.execute()
        return [TaskRecord.from_hash(i, raw) for i, raw in zip(task_ids, raws, strict=True)]

    async def task_ids(
        self, owner: str, *, model: str | None, before: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        """The owner's task ids, newest first, strictly after the cursor `before`."""
        key = self.user_index(owner, model)
        oldest = now() - self.ttl_s
        top = "+inf" if before is None else repr(before[0])
        with store_errors():
            raw: Any = await self.redis.zrevrangebyscore(
                key, top, repr(oldest), start=0, num=count + 64, withscores=True
            )
        entries = [(decoded(member), float(score)) for member, score in raw]
        if before is not None:
            # Same-score entries sort by member, descending: skip up to the cursor's id.
            entries = [
                (i, s) for i, s in entries if s < before[0] or (s == before[0] and i < before[1])
            ]
        return entries[:count]

    async def forget(self, owner: str, task_ids: list[str], model: str | None = None) -> None:
        """Drop ids whose records are gone from the owner's index (and that of `model`)."""
        if not task_ids:
            return
        with store_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zrem(self.user_index(owner), *task_ids)
                if model is not None:
                    pipe.zrem(self.user_index(owner, model), *task_ids)
                await pipe.execute()

    @staticmethod
    def parse_event(data: bytes | str) -> dict[str, str]:
        """A change notification as record fields (text, like `TaskRecord.fields`).

        Every field travels as the text the script wrote, but the sequence number, which
        cjson renders as a number.
        """
        decoded_event: dict[str, Any] = json.loads(data)
        return {k: v if isinstance(v, str) else str(int(v)) for k, v in decoded_event.items()}
