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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from app.core.fair_share import FAIR_KEYS_LUA, FairShareKeys, Priority
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
from app.core.ratelimit import BUCKET_LUA
from app.core.redis_batch import LuaScript, ScriptBatcher
from app.core.redis_batch import StoreError as StoreError  # re-exported: where callers look
from app.core.redis_batch import store_errors as store_errors
from app.core.settings import Settings

# Flags of a transition (ARGV[5]):
#   c  a cancel requested while the task ran turns this write into `cancelled`
#   d  a pending task never started and past its deadline becomes `expired` instead; a
#      write whose target is `expired` happens only then
_FINAL_TABLE = "{" + ", ".join(f"['{s.value}'] = true" for s in sorted(FINAL_STATES)) + "}"

# Taking a task out of its owner's fair share when it ends, and back in when replayed.
_SHARE_LUA = (
    FAIR_KEYS_LUA
    + """
local function leave_share(prefix, key, task_id)
  local model = redis.call('HGET', key, 'model')
  local owner = redis.call('HGET', key, 'owner')
  if not model or not owner then return 0 end
  redis.call('ZREM', fair_key(prefix, 'released', model, owner), task_id)
  local held = fair_key(prefix, 'held', model, owner)
  redis.call('ZREM', held, task_id)
  local left = redis.call('ZCARD', held)
  if left == 0 then redis.call('SREM', holders_key(prefix, model), owner) end
  return left
end
local function join_share(prefix, key, task_id)
  local model = redis.call('HGET', key, 'model')
  local owner = redis.call('HGET', key, 'owner')
  if not model or not owner then return end
  local created = redis.call('HGET', key, 'created_at') or '0'
  redis.call('ZADD', fair_key(prefix, 'released', model, owner), created, task_id)
end
"""
)

# ARGV: ttl, target, allowed sources, now, flags, count of published pairs, key prefix, task
# id, then field pairs (the published ones first). Returns {written, status, seq, callback URL
# of a pending delivery, tasks its owner still has held (when this write made it final)}.
_TRANSITION = (
    _SHARE_LUA
    + f"""
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
  return {{0, current, seq, pending_hook(current), 0}}
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
    return {{0, current, seq, '', 0}}
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
  for i = 9, 8 + 2 * tonumber(ARGV[6]), 2 do event[ARGV[i]] = ARGV[i + 1] end
  if #ARGV >= 9 then redis.call('HSET', key, unpack(ARGV, 9)) end
end
local held = 0
if final[status] and not final[current] then
  held = leave_share(ARGV[7], key, ARGV[8])
elseif final[current] and not final[status] and string.find(flags, 'j', 1, true) then
  join_share(ARGV[7], key, ARGV[8])
end
redis.call('HSET', key, 'status', status, 'seq', seq)
redis.call('EXPIRE', key, ARGV[1])
event['status'] = status
event['seq'] = seq
redis.call('PUBLISH', KEYS[2], cjson.encode(event))
return {{1, status, seq, pending_hook(status), held}}
"""
)

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

# A submit of one owner's tasks to one model, in one atomic step: the owner's limits (the
# defaults, or the admin's overrides in the owner's limits hash), the priority they may use,
# their count of tasks queued or running against its quota, a token from their submit
# bucket, then each task created `pending` (published on its channel, indexed for its owner)
# and routed: into the work queue ('d') while the owner's window has room and nothing of
# theirs is held, else into their hold queue ('h').
# KEYS: bucket, limits hash, released set, held set, holders set, then per task: its hash, its
#   change channel, the owner's index, the owner's index of the model.
# ARGV: ttl, oldest score kept, task count, default rate, default burst, default quota of
#   tasks queued or running, window, fair share on (1|0), priority level, default highest
#   level, owner, then per task: id, creation time, field pair count, field pairs.
# Returns {'ok', tokens left, routes, rate, burst} or {'priority', highest level} or
#   {'active', count, quota} or {'rate', tokens left, seconds to wait, rate, burst}.
_ADMIT = LuaScript(
    BUCKET_LUA
    + f"""
local limits = {{}}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do limits[raw[i]] = tonumber(raw[i + 1]) end
local rate = limits['submits_per_s'] or tonumber(ARGV[4])
local burst = limits['submit_burst'] or tonumber(ARGV[5])
local quota = limits['active_tasks'] or tonumber(ARGV[6])
local highest = limits['max_priority'] or tonumber(ARGV[10])
if tonumber(ARGV[9]) > highest then return {{'priority', tostring(highest)}} end
local ttl = ARGV[1]
local oldest = ARGV[2]
local n = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. oldest)
local released = redis.call('ZCARD', KEYS[3])
local held = redis.call('ZCARD', KEYS[4])
if quota >= 0 and released + held + n > quota then
  return {{'active', tostring(released + held), tostring(quota)}}
end
local take = take_tokens(KEYS[1], rate, burst, 1, redis_now())
if take[1] == 0 then return {{'rate', take[2], take[3], tostring(rate), tostring(burst)}} end
local window = tonumber(ARGV[7])
local fair = ARGV[8] == '1'
local routes = {{}}
local at = 12
for t = 1, n do
  local base = 5 + (t - 1) * 4
  local id, created, pairs = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2])
  if fair and (held > 0 or released >= window) then
    redis.call('ZADD', KEYS[4], created, id)
    held = held + 1
    routes[t] = 'h'
  else
    redis.call('ZADD', KEYS[3], created, id)
    released = released + 1
    routes[t] = 'd'
  end
  local hash = KEYS[base + 1]
  redis.call('HSET', hash, 'status', '{TaskStatus.PENDING}', 'seq', 1,
    unpack(ARGV, at + 3, at + 2 + 2 * pairs))
  redis.call('EXPIRE', hash, ttl)
  redis.call('PUBLISH', KEYS[base + 2], cjson.encode({{seq = 1, status = '{TaskStatus.PENDING}'}}))
  for i = base + 3, base + 4 do
    redis.call('ZADD', KEYS[i], created, id)
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. oldest)
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  at = at + 3 + 2 * pairs
end
if held > 0 then
  redis.call('SADD', KEYS[5], ARGV[11])
  redis.call('EXPIRE', KEYS[5], ttl)
end
redis.call('EXPIRE', KEYS[3], ttl)
redis.call('EXPIRE', KEYS[4], ttl)
return {{'ok', take[2], table.concat(routes), tostring(rate), tostring(burst)}}
"""
)

# A synchronous call takes a token from its owner's submit bucket (their overrides apply).
# KEYS: bucket, limits hash. ARGV: default rate, default burst.
# Returns {taken (1|0), tokens left, seconds to wait, rate, burst}.
_TAKE_CALL = LuaScript(
    BUCKET_LUA
    + """
local limits = {}
local raw = redis.call('HGETALL', KEYS[2])
for i = 1, #raw, 2 do limits[raw[i]] = tonumber(raw[i + 1]) end
local rate = limits['submits_per_s'] or tonumber(ARGV[1])
local burst = limits['submit_burst'] or tonumber(ARGV[2])
local take = take_tokens(KEYS[1], rate, burst, 1, redis_now())
return {take[1], take[2], take[3], tostring(rate), tostring(burst)}
"""
)

# How many more of an owner's tasks their window has room for now. KEYS: released set.
# ARGV: window.
_RELEASE_ROOM = LuaScript("""
local room = tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
if room < 0 then return 0 end
return room
""")

# The held task is in the work queue now (published and confirmed): count it there.
# KEYS: released set, held set, holders set. ARGV: task id, owner, ttl.
_RELEASED = LuaScript("""
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], score, ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('SREM', KEYS[3], ARGV[2]) end
return 1
""")

# KEYS: task hash, its change channel, the model's cancel channel. ARGV: ttl, now, task id,
# key prefix. A pending task is cancelled at once (leaving its owner's fair share); a running
# one is flagged, and its replica told.
_REQUEST_CANCEL = (
    _SHARE_LUA
    + f"""
local key = KEYS[1]
local current = redis.call('HGET', key, 'status') or '{NO_RECORD}'
local seq = tonumber(redis.call('HGET', key, 'seq') or '0')
if current == '{TaskStatus.PENDING}' then
  seq = seq + 1
  redis.call('HSET', key, 'status', '{TaskStatus.CANCELLED}', 'seq', seq, 'finished_at', ARGV[2])
  redis.call('EXPIRE', key, ARGV[1])
  redis.call('PUBLISH', KEYS[2],
    cjson.encode({{seq = seq, status = '{TaskStatus.CANCELLED}', finished_at = ARGV[2]}}))
  leave_share(ARGV[4], key, ARGV[3])
  return {{1, '{TaskStatus.CANCELLED}', seq, redis.call('HGET', key, 'webhook_url') or ''}}
elseif current == '{TaskStatus.RUNNING}' then
  redis.call('HSET', key, 'cancel_requested', '1')
  redis.call('PUBLISH', KEYS[3], ARGV[3])
  return {{2, current, seq, ''}}
end
return {{0, current, seq, ''}}
"""
)

# Fields of an existing record only (a webhook outcome must not resurrect an expired task).
_UPDATE_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# One chunk of a streaming model's output, appended to the task's chunk list (JSON texts, in
# order) and published on the task's channel with its number, only while the task runs and
# only if it is the next one: a retried attempt that yields again the chunks an earlier
# attempt wrote appends nothing until it goes beyond them.
# KEYS: chunk list, task hash, change channel. ARGV: chunk number (from 1), JSON text, ttl.
# Returns 1 written, 0 written before (by an earlier attempt), -1 the task does not run.
_ADD_CHUNK = f"""
if redis.call('HGET', KEYS[2], 'status') ~= '{TaskStatus.RUNNING}' then return -1 end
local number = tonumber(ARGV[1])
local have = redis.call('LLEN', KEYS[1])
if have >= number then return 0 end
if have ~= number - 1 then return -1 end
redis.call('RPUSH', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], 'chunks', number)
redis.call('PUBLISH', KEYS[3], '{{"chunk":' .. number .. ',"data":' .. ARGV[2] .. '}}')
return 1
"""

PROGRESS_SOURCES = " running "
# An admin's replay of a dead letter reopens a failed task: the one write whose source is a
# final state, made only by that explicit action (a pending one is a replay done again).
REPLAY_SOURCES = f" {NO_RECORD} {TaskStatus.FAILED} {TaskStatus.PENDING} "


@dataclass(frozen=True)
class Transition:
    """The outcome of a state write."""

    written: bool
    # The task's status after the call; None when there is no record.
    status: TaskStatus | None
    seq: int
    # The callback URL when the task is final and its delivery is still to be made.
    webhook_url: str | None = None
    # When this write ended the task: how many tasks its owner still has held (fair share),
    # one of which may now move into the work queue.
    owner_held: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Transition:
        written, status, seq, hook, *rest = raw
        text = status.decode() if isinstance(status, bytes) else str(status)
        url = hook.decode() if isinstance(hook, bytes) else str(hook)
        return cls(
            written=bool(int(written)),
            status=None if text == NO_RECORD else TaskStatus(text),
            seq=int(seq),
            webhook_url=url or None,
            owner_held=int(rest[0]) if rest else 0,
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
    priority: Priority = Priority.NORMAL

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model,
            "owner": self.owner,
            "created_at": self.created_at,
            "attempts": 0,
        }
        if self.priority is not Priority.NORMAL:
            fields["priority"] = self.priority.value
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
        text = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
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


def now() -> float:
    return time.time()


def _decoded(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


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
        self._add_chunk = LuaScript(_ADD_CHUNK)
        self._batch = ScriptBatcher(redis)
        self.fair = FairShareKeys(prefix)

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

    def chunks_key(self, task_id: str) -> str:
        """The chunks a streaming model produced for the task: a list of JSON texts."""
        return f"{self.prefix}:chunks:{task_id}"

    def cancel_channel(self, model: str) -> str:
        """Where the replicas of `model` hear which running task to cancel."""
        return f"{self.prefix}:cancel:{model}"

    def limits_key(self, owner: str) -> str:
        """The admin's overrides of an owner's limits (a hash; absent fields: the defaults)."""
        return f"{self.prefix}:limits:{owner}"

    def bucket_key(self, owner: str) -> str:
        """The owner's submit token bucket."""
        return f"{self.prefix}:bucket:{owner}"

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
            self.prefix,
            task_id,
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
            keys += [
                self.key(task.task_id),
                self.events_channel(task.task_id),
                self.user_index(task.owner),
                self.user_index(task.owner, task.model),
            ]
            pairs = task.fields()
            args += [task.task_id, repr(task.created_at), len(pairs)]
            for name, value in pairs.items():
                args.extend((name, value if isinstance(value, bytes) else _text(value)))
        with store_errors():
            raw = await self._batch.call(_ADMIT, keys, args)
        return Admission.parse(raw)

    async def take_call(self, owner: str, limits: SubmitLimits) -> Admission:
        """A token from the owner's submit bucket for a synchronous call (no task made)."""
        with store_errors():
            raw = await self._batch.call(
                _TAKE_CALL,
                [self.bucket_key(owner), self.limits_key(owner)],
                [repr(limits.submits_per_s), repr(limits.submit_burst)],
            )
        taken, left, wait, rate, burst = (
            v.decode() if isinstance(v, bytes) else str(v) for v in raw
        )
        return Admission(
            refused=None if int(taken) else "rate",
            tokens_left=float(left),
            wait_s=float(wait),
            rate=float(rate),
            burst=float(burst),
        )

    async def release_room(self, model: str, owner: str, window: int) -> int:
        """How many more of the owner's tasks their window has room for now."""
        keys = [self.fair.released(model, owner)]
        with store_errors():
            return int(await self._batch.call(_RELEASE_ROOM, keys, [window]))

    async def is_held(self, model: str, owner: str, task_id: str) -> bool:
        """Whether the task still waits in its owner's hold (not ended, not moved already)."""
        with store_errors():
            score = await self.redis.zscore(self.fair.held(model, owner), task_id)
        return score is not None

    async def released(self, model: str, owner: str, task_id: str) -> None:
        """A held task was published to the work queue: count it in the owner's window (a
        few releases racing on several replicas may put it a task or two over)."""
        keys = [
            self.fair.released(model, owner),
            self.fair.held(model, owner),
            self.fair.holders(model),
        ]
        with store_errors():
            await self._batch.call(_RELEASED, keys, [task_id, owner, self.ttl_s])

    async def share(self, model: str, owner: str) -> tuple[int, int]:
        """The owner's tasks of `model` in the work queue (or running), and held."""
        with store_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.fair.released(model, owner))
                pipe.zcard(self.fair.held(model, owner))
                released, held = await pipe.execute()
        return int(released), int(held)

    async def holders(self, model: str) -> list[str]:
        """Owners with tasks of `model` held."""
        with store_errors():
            raw = await self.redis.smembers(self.fair.holders(model))  # type: ignore[misc,unused-ignore]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)

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
        return await self._write(
            task_id,
            TaskStatus.SUCCEEDED,
            published,
            {"result": result, "result_json": result_json},
            flags="c",
        )

    async def add_chunk(self, task_id: str, number: int, chunk_json: str) -> int:
        """Append chunk `number` (from 1) of a running task and publish it; 1 written, 0
        written before by an earlier attempt, -1 the task does not run (any more)."""
        with store_errors():
            written = await self._batch.call(
                self._add_chunk,
                [self.chunks_key(task_id), self.key(task_id), self.events_channel(task_id)],
                [number, chunk_json, self.ttl_s],
            )
        return int(written)

    async def chunks(self, task_id: str, after: int = 0) -> list[str]:
        """The task's chunks from number `after + 1` on, as JSON texts."""
        with store_errors():
            raw: list[Any] = await self.redis.lrange(self.chunks_key(task_id), after, -1)  # type: ignore[misc,unused-ignore]
        return [_decoded(item) for item in raw]

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
            flags="j",  # back into its owner's window: it goes straight to the work queue
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
                [self.ttl_s, repr(now()), task_id, self.prefix],
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
