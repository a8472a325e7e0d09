"""`ChunkStore`: the chunks a streaming model produced for a task, in Redis, in order.

Each chunk is appended and published in one step (`lua/add_chunk.lua`), only while its task
runs and only as the next one, so a retried attempt sends no chunk twice."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from app.core.redis_scripts import ScriptBatcher, load_script, store_errors
from app.tasks.records import TaskRecords
from app.tasks.shapes import decoded

ADD_CHUNK = load_script(__file__, "add_chunk")


class ChunkStore:
    """Args:
    redis: the platform's Redis.
    batch: the pipeline the store's script calls go through.
    records: the task records (their key names).
    prefix: key prefix.
    ttl_s: how long chunks are kept (as long as the result).
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
        self._batch = batch
        self._records = records

    def key(self, task_id: str) -> str:
        """The chunks a streaming model produced for the task: a list of JSON texts."""
        return f"{self.prefix}:chunks:{task_id}"

    async def add(self, task_id: str, number: int, chunk_json: str) -> int:
        """Append chunk `number` (from 1) of a running task and publish it; 1 written, 0
        written before by an earlier attempt, -1 the task does not run (any more)."""
        keys = [self.key(task_id), self._records.key(task_id)]
        keys.append(self._records.events_channel(task_id))
        with store_errors():
            written = await self._batch.call(ADD_CHUNK, keys, [number, chunk_json, self.ttl_s])
        return int(written)

    async def read(self, task_id: str, after: int = 0) -> list[str]:
        """The task's chunks from number `after + 1` on, as JSON texts."""
        with store_errors():
            raw: list[Any] = await self.redis.lrange(self.key(task_id), after, -1)  # type: ignore[misc,unused-ignore]
        return [decoded(item) for item in raw]
