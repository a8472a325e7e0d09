"""`ResultStore`: task records in Redis, one hash per task, every write idempotent per task id.

Final states (`succeeded`, `failed`) are never overwritten: the scripts below check and write in
one atomic step, so a redelivered task cannot replace or corrupt a result already stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.redis_batch import LuaScript, ScriptBatcher
from app.core.tasks import TaskRecord, TaskStatus, now

# KEYS[1] = task key; ARGV = ttl, started_at, attempt, model, owner, created_at
# Returns the current status when it is final (the caller skips the work), else "running".
_MARK_RUNNING = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' then return status end
redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[2], 'attempts', ARGV[3],
           'model', ARGV[4], 'owner', ARGV[5])
if not redis.call('HGET', KEYS[1], 'created_at') then
  redis.call('HSET', KEYS[1], 'created_at', ARGV[6])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 'running'
"""

# KEYS[1] = task key; ARGV = ttl, then field/value pairs. Writes only if not final yet.
# Returns 1 when written, 0 when a final state was already there.
_WRITE_UNLESS_FINAL = """
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'succeeded' or status == 'failed' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""


class StoreError(RuntimeError):
    """Redis could not be reached or answered with an error."""


@contextmanager
def store_errors() -> Iterator[None]:
    """Turn any Redis or socket error raised inside into a `StoreError`."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(str(exc)) from exc


def _float(raw: bytes | None) -> float | None:
    return float(raw) if raw else None


def _str(raw: bytes | None) -> str | None:
    return raw.decode() if raw else None


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
        self._mark_running = LuaScript(_MARK_RUNNING)
        self._write_unless_final_script = LuaScript(_WRITE_UNLESS_FINAL)
        self._batch = ScriptBatcher(redis)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, ttl_s: int, timeout_s: float) -> ResultStore:
        redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            health_check_interval=30,
        )
        return cls(redis, prefix=prefix, ttl_s=ttl_s)

    def key(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        with store_errors():
            await self.redis.ping()

    async def create_pending(
        self, task_id: str, *, model: str, owner: str, created_at: float
    ) -> None:
        """Record a task as `pending` (before it is published)."""
        key = self.key(task_id)
        with store_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key,
                    mapping={
                        "model": model,
                        "owner": owner,
                        "status": TaskStatus.PENDING.value,
                        "created_at": repr(created_at),
                        "attempts": 0,
                    },
                )
                pipe.expire(key, self.ttl_s)
                await pipe.execute()

    async def delete(self, task_id: str) -> None:
        with store_errors():
            await self.redis.delete(self.key(task_id))

    async def mark_running(
        self, task_id: str, *, attempt: int, model: str, owner: str, created_at: float
    ) -> TaskStatus:
        """Move a task to `running` unless it is already final; return the resulting status."""
        with store_errors():
            status = await self._batch.call(
                self._mark_running,
                [self.key(task_id)],
                [self.ttl_s, repr(now()), attempt, model, owner, repr(created_at)],
            )
        return TaskStatus(status.decode() if isinstance(status, bytes) else status)

    async def mark_succeeded(
        self, task_id: str, *, result: bytes, result_json: str, attempts: int
    ) -> bool:
        """Store the result; False when a final state was already stored (nothing written)."""
        return await self._write_final(
            task_id,
            status=TaskStatus.SUCCEEDED,
            result=result,
            result_json=result_json,
            attempts=attempts,
            error="",
            error_code="",
        )

    async def mark_failed(
        self,
        task_id: str,
        *,
        error: str,
        error_code: str,
        attempts: int,
        model: str = "",
        owner: str = "",
    ) -> bool:
        """Store a failure with its error text; False when already final."""
        fields: dict[str, Any] = {"error": error, "error_code": error_code, "attempts": attempts}
        if model:
            fields["model"] = model
        if owner:
            fields["owner"] = owner
        return await self._write_final(task_id, status=TaskStatus.FAILED, **fields)

    async def requeued(self, task_id: str, *, attempts: int, error: str) -> bool:
        """Put a task back to `pending` after a failed attempt, keeping that attempt's error."""
        return await self._write_unless_final(
            task_id,
            {"status": TaskStatus.PENDING.value, "attempts": attempts, "error": error},
        )

    async def _write_final(self, task_id: str, *, status: TaskStatus, **fields: Any) -> bool:
        fields = {"status": status.value, "finished_at": repr(now()), **fields}
        return await self._write_unless_final(task_id, fields)

    async def _write_unless_final(self, task_id: str, fields: dict[str, Any]) -> bool:
        args: list[Any] = [self.ttl_s]
        for name, value in fields.items():
            args.extend((name, value))
        with store_errors():
            written = await self._batch.call(
                self._write_unless_final_script, [self.key(task_id)], args
            )
        return bool(written)

    async def get(self, task_id: str) -> TaskRecord | None:
        with store_errors():
            raw: dict[Any, Any] = await self.redis.hgetall(self.key(task_id))  # type: ignore[misc,unused-ignore]
        if not raw or b"status" not in raw:
            return None
        return TaskRecord(
            task_id=task_id,
            model=_str(raw.get(b"model")) or "",
            owner=_str(raw.get(b"owner")) or "",
            status=TaskStatus(raw[b"status"].decode()),
            created_at=_float(raw.get(b"created_at")) or 0.0,
            started_at=_float(raw.get(b"started_at")),
            finished_at=_float(raw.get(b"finished_at")),
            attempts=int(raw.get(b"attempts") or 0),
            error=_str(raw.get(b"error")),
            error_code=_str(raw.get(b"error_code")),
            result=raw.get(b"result"),
            result_json=_str(raw.get(b"result_json")),
        )
