"""`ResultStore`: task records in Redis, one hash per task, every write a checked transition.

Every state write goes through one Lua script that, in one atomic step, checks the write is a
transition `app.core.lifecycle.TRANSITIONS` allows, writes it, bumps the task's sequence number
and publishes the change on the task's channel (the gateway's waiters listen there). A final
state is the source of no transition, so a redelivered task can never overwrite a result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError

from app.core.lifecycle import (
    ERROR_DEADLINE,
    ERROR_NOT_ACCEPTED,
    FINAL_STATES,
    NO_RECORD,
    TRANSITIONS,
    TaskRecord,
    TaskStatus,
    allowed_sources,
)
from app.core.redis_batch import LuaScript, ScriptBatcher
from app.core.settings import Settings

# Flags of a transition (ARGV[5]):
#   c  a cancel requested while the task ran turns this write into `cancelled`
#   d  a pending task never started and past its deadline becomes `expired` instead; a
#      write whose target is `expired` happens only then
_FINAL_TABLE = "{" + ", ".join(f"['{s.value}'] = true" for s in sorted(FINAL_STATES)) + "}"

_TRANSITION = f"""
local key = KEYS[1]
local final = {_FINAL_TABLE}
-- The callback of a final task whose delivery is not done yet (a redelivered task hands it on
-- again, in case the replica that finished it died before queueing the delivery).
local function pending_hook(status)
  if final[status] and redis.call('HGET', key, 'webhook_status') == 'pending' then
    return redis.call('HGET', key, 'webhook_url') or ''
  end
  return ''
end
local current = redis.call('HGET', key, 'status') or '{NO_RECORD}'
local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
if not string.find(ARGV[3], ' ' .. current .. ' ', 1, true) then
  return {{0, current, seq, pending_hook(current)}}
end
local status = ARGV[2]
local now = ARGV[4]
local flags = ARGV[5]
local redirect = nil
if string.find(flags, 'c', 1, true) and redis.call('HGET', key, 'cancel_requested') == '1' then
  redirect = '{TaskStatus.CANCELLED}'
elseif string.find(flags, 'd', 1, true) then
  local deadline = tonumber(redis.call('HGET', key, 'deadline') or '')
  local attempts = tonumber(redis.call('HGET', key, 'attempts') or '0')
  if current == '{TaskStatus.PENDING}' and attempts == 0 and deadline
      and tonumber(now) >= deadline then
    redirect = '{TaskStatus.EXPIRED}'
  elseif status == '{TaskStatus.EXPIRED}' then
    return {{0, current, seq, ''}}
  end
end
seq = seq + 1
local event = {{}}
if redirect then
  status = redirect
  event['finished_at'] = now
  if redirect == '{TaskStatus.EXPIRED}' then
    event['error'] = 'not started before its deadline'
    event['error_code'] = '{ERROR_DEADLINE}'
  end
  for name, value in pairs(event) do redis.call('HSET', key, name, value) end
else
  for i = 7, 6 + 2 * tonumber(ARGV[6]), 2 do event[ARGV[i]] = ARGV[i + 1] end
  if #ARGV >= 7 then redis.call('HSET', key, unpack(ARGV, 7)) end
end
redis.call('HSET', key, 'status', status, 'seq', seq)
redis.call('EXPIRE', key, ARGV[1])
event['status'] = status
event['seq'] = seq
redis.call('PUBLISH', KEYS[2], cjson.encode(event))
return {{1, status, seq, pending_hook(status)}}
"""

# A submitted task, created from no record: `pending`, or at once `succeeded` with a cached
# answer (the two transitions TRANSITIONS allows from no record at submit), published like
# every write, and indexed for its owner, in one round trip.
# KEYS: task hash, change channel, owner's index, owner's index of the model.
# ARGV: ttl, created_at (the index score), task id, oldest score kept, status, then pairs.
_CREATED = (TaskStatus.PENDING, TaskStatus.SUCCEEDED)
assert all(NO_RECORD in TRANSITIONS[status] for status in _CREATED)  # noqa: S101
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'seq', 1, unpack(ARGV, 6))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[2], cjson.encode({seq = 1, status = ARGV[5]}))
for i = 3, 4 do
  redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[4])
  redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return 1
"""

# KEYS: task hash, its change channel, the model's cancel channel. ARGV: ttl, now, task id.
# A pending task is cancelled at once; a running one is flagged, and its replica told.
_REQUEST_CANCEL = f"""
local key = KEYS[1]
local current = redis.call('HGET', key, 'status') or '{NO_RECORD}'
local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
if current == '{TaskStatus.PENDING}' then
  seq = seq + 1
  redis.call('HSET', key, 'status', '{TaskStatus.CANCELLED}', 'seq', seq, 'finished_at', ARGV[2])
  redis.call('EXPIRE', key, ARGV[1])
  redis.call('PUBLISH', KEYS[2],
    cjson.encode({{seq = seq, status = '{TaskStatus.CANCELLED}', finished_at = ARGV[2]}}))
  return {{1, '{TaskStatus.CANCELLED}', seq, redis.call('HGET', key, 'webhook_url') or ''}}
elseif current == '{TaskStatus.RUNNING}' then
  redis.call('HSET', key, 'cancel_requested', '1')
  redis.call('PUBLISH', KEYS[3], ARGV[3])
  return {{2, current, seq, ''}}
end
return {{0, current, seq, ''}}
"""

# Fields of an existing record only (a webhook outcome must not resurrect an expired task).
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

PROGRESS_SOURCES = " running "
# An admin's replay of a dead letter reopens a failed task: the one write whose source is a
# final state, made only by that explicit action (a pending one is a replay done again).
REPLAY_SOURCES = f" {NO_RECORD} {TaskStatus.FAILED} {TaskStatus.PENDING} "


class StoreError(RuntimeError):
    """Redis could not be reached or answered with an error."""


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn any Redis or socket error raised inside into a `StoreError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(str(exc) or type(exc).__name__) from exc


@dataclass(frozen=True)
class Transition:
    """The outcome of a state write."""

    written: bool
    # The task's status after the call; None when there is no record.
    status: TaskStatus | None
    seq: int
    # The callback URL when the task is final and its delivery is still to be made.
    webhook_url: str | None = None

    @classmethod
    def parse(cls, raw: Any) -> Transition:
        written, status, seq, hook = raw
        text = status.decode() if isinstance(status, bytes) else str(status)
        url = hook.decode() if isinstance(hook, bytes) else str(hook)
        return cls(
            written=bool(int(written)),
            status=None if text == NO_RECORD else TaskStatus(text),
            seq=int(seq),
            webhook_url=url or None,
        )


@dataclass(frozen=True)
class CachedResult:
    """A model's answer to a request, as stored (see `app.core.cache`)."""

    result: bytes
    result_json: str


@dataclass(frozen=True)
class PendingTask:
    """A task being submitted."""

    task_id: str
    model: str
    owner: str
    created_at: float
    deadline: float | None = None
    webhook_url: str | None = None
    # An identical request's answer: the task is created succeeded with it.
    cached: CachedResult | None = None
    model_version: str | None = None

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model,
            "owner": self.owner,
            "created_at": self.created_at,
            "attempts": 0,
        }
        if self.model_version is not None:
            fields["model_version"] = self.model_version
        if self.cached is not None:
            fields.update(
                cached=1,
                started_at=self.created_at,
                finished_at=self.created_at,
                result=self.cached.result,
                result_json=self.cached.result_json,
            )
        if self.deadline is not None:
            fields["deadline"] = self.deadline
        if self.webhook_url:
            fields.update(
                webhook_url=self.webhook_url, webhook_status="pending", webhook_attempts=0
            )
        return fields


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request did: cancelled at once, asked the replica, or nothing (final)."""

    transition: Transition
    requested: bool  # the task was running: its replica was asked to stop


def now() -> float:
    return time.time()


def _text(value: Any) -> str:
    """A field value as Redis will hold it (floats at full precision)."""
    return repr(value) if isinstance(value, float) else str(value)


class ResultStore:
    """Reads and writes task records.

    Args:
        redis: a `redis.asyncio.Redis` client (not decoding responses: results are bytes).
        prefix: key prefix, so several deployments or test runs can share a database.
        ttl_s: lifetime of every record, refreshed on each write.
    """

    def __init__(self, redis: Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._create = LuaScript(_CREATE)
        self._transition = LuaScript(_TRANSITION)
        self._request_cancel = LuaScript(_REQUEST_CANCEL)
        self._update_if_exists = LuaScript(_UPDATE_IF_EXISTS)
        self._batch = ScriptBatcher(redis)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        ttl_s: int,
        timeout_s: float,
        max_connections: int = 64,
        connection_wait_s: float | None = None,
    ) -> ResultStore:
        # A blocking pool: a burst of requests beyond `max_connections` waits for a connection
        # instead of failing with "too many connections". The wait is bounded separately from
        # a command's own timeout: under a flood, a free connection can take longer to come
        # than a healthy Redis takes to answer.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=connection_wait_s or timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        return cls(Redis(connection_pool=pool), prefix=prefix, ttl_s=ttl_s)

    @classmethod
    def from_settings(cls, settings: Settings) -> ResultStore:
        """The store every component uses: the settings' Redis, prefix, retention, bounds."""
        return cls.from_url(
            str(settings.redis_url),
            prefix=settings.redis_prefix,
            ttl_s=settings.result_ttl_s,
            timeout_s=settings.io_timeout_s,
            max_connections=settings.redis_max_connections,
            connection_wait_s=settings.redis_connection_wait_s,
        )

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

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        with store_errors():
            await self.redis.ping()

    # ---- writes ---------------------------------------------------------------------

    async def _write(
        self,
        task_id: str,
        target: TaskStatus,
        published: Mapping[str, Any],
        stored: Mapping[str, Any] | None = None,
        *,
        flags: str = "",
        sources: str | None = None,
    ) -> Transition:
        args: list[Any] = [
            self.ttl_s,
            target.value,
            sources or allowed_sources(target),
            repr(now()),
            flags or "-",
            len(published),
        ]
        for name, value in (*published.items(), *(stored or {}).items()):
            args.extend((name, value if isinstance(value, bytes) else _text(value)))
        with store_errors():
            raw = await self._batch.call(
                self._transition, [self.key(task_id), self.events_channel(task_id)], args
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
            ]
            for name, value in task.fields().items():
                args.extend((name, value if isinstance(value, bytes) else _text(value)))
            keys = [
                self.key(task.task_id),
                self.events_channel(task.task_id),
                self.user_index(task.owner),
                self.user_index(task.owner, task.model),
            ]
            with store_errors():
                await self._batch.call(self._create, keys, args)

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
        return await self._write(
            task_id,
            TaskStatus.RUNNING,
            {"started_at": now(), "attempts": attempt, "model_version": version},
            {"model": model, "owner": owner, "created_at": created_at},
            flags="cd",
        )

    async def succeed(
        self, task_id: str, *, result: bytes, result_json: str, attempts: int
    ) -> Transition:
        """Store the result (or `cancelled`, if a cancel came while it ran)."""
        return await self._write(
            task_id,
            TaskStatus.SUCCEEDED,
            {"finished_at": now(), "attempts": attempts, "error": "", "error_code": ""},
            {"result": result, "result_json": result_json},
            flags="c",
        )

    async def fail(self, task_id: str, *, error: str, error_code: str, attempts: int) -> Transition:
        """Store a failure with its error text (or `cancelled`, if a cancel came meanwhile)."""
        return await self._write(
            task_id,
            TaskStatus.FAILED,
            {"finished_at": now(), "error": error, "error_code": error_code, "attempts": attempts},
            flags="c",
        )

    async def requeue(self, task_id: str, *, attempts: int, error: str) -> Transition:
        """Back to `pending` after a failed attempt, keeping that attempt's error."""
        return await self._write(
            task_id, TaskStatus.PENDING, {"attempts": attempts, "error": error}, flags="c"
        )

    async def cancelled(self, task_id: str) -> Transition:
        """A replica stopped the task on a cancel request."""
        return await self._write(task_id, TaskStatus.CANCELLED, {"finished_at": now()})

    async def expire_if_due(self, task_id: str) -> Transition:
        """`expired` if the task is pending, never started and past its deadline."""
        return await self._write(task_id, TaskStatus.EXPIRED, {}, flags="d")

    async def not_accepted(self, task_id: str, *, reason: str) -> Transition:
        """The broker did not confirm the submit: the task is failed, so a copy that did reach
        the queue is acknowledged without running."""
        return await self._write(
            task_id,
            TaskStatus.FAILED,
            {"finished_at": now(), "error": reason, "error_code": ERROR_NOT_ACCEPTED},
        )

    async def replay(self, task_id: str) -> Transition:
        """An admin sends a dead-lettered task back to its queue: `pending` again from
        `failed` (or from a record that expired), attempts reset, the old error cleared."""
        return await self._write(
            task_id,
            TaskStatus.PENDING,
            {"attempts": 0, "error": "", "error_code": "", "finished_at": ""},
            sources=REPLAY_SOURCES,
        )

    async def progress(self, task_id: str, *, fraction: float, message: str) -> Transition:
        """A running model's progress report (no state change; published like one)."""
        return await self._write(
            task_id,
            TaskStatus.RUNNING,
            {"progress": fraction, "progress_message": message},
            sources=PROGRESS_SOURCES,
        )

    async def request_cancel(self, task_id: str, model: str) -> CancelOutcome:
        """Cancel a pending task at once; flag a running one and tell its model's replicas."""
        with store_errors():
            raw = await self._batch.call(
                self._request_cancel,
                [self.key(task_id), self.events_channel(task_id), self.cancel_channel(model)],
                [self.ttl_s, repr(now()), task_id],
            )
        # 1: cancelled now; 2: running, its replica asked; 0: nothing to cancel.
        code = int(raw[0])
        return CancelOutcome(
            transition=Transition.parse([int(code == 1), *raw[1:]]), requested=code == 2
        )

    async def update_webhook(self, task_id: str, **fields: Any) -> bool:
        """Record a webhook delivery outcome (`webhook_<name>` fields); False if no record."""
        args: list[Any] = []
        for name, value in fields.items():
            args.extend((f"webhook_{name}", "" if value is None else _text(value)))
        with store_errors():
            written = await self._batch.call(self._update_if_exists, [self.key(task_id)], args)
        return bool(written)

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
        entries = [(member.decode(), float(score)) for member, score in raw]
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
        decoded: dict[str, Any] = json.loads(data)
        return {k: v if isinstance(v, str) else str(int(v)) for k, v in decoded.items()}
