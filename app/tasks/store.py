"""`ResultStore`: the one object the platform holds for Redis, the task records with what goes
along with them.

Each concern owns its keys and its scripts in its own module; this class opens the connection
they share, runs their script calls through one pipeline per event-loop tick, and lets callers
reach them through one name:

- task records and transitions: `app.tasks.records` (`lua/create`, `transition`,
  `request_cancel`);
- admission (quotas and a submit's tasks in one step; synchronous calls' tokens):
  `app.sharing.admission` (`admit`, `take_call`);
- fair share's windows and holds: `app.sharing.fair_share` (`release_room`, `released`);
- a streaming model's chunks: `app.streaming.chunks` (`add_chunk`);
- a task's webhook delivery outcome: `app.webhooks.state` (`record_delivery`).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis

from app.core.lifecycle import TaskRecord
from app.core.redis_scripts import ScriptBatcher
from app.core.redis_scripts import StoreError as StoreError  # re-exported: where callers look
from app.core.redis_scripts import store_errors as store_errors
from app.core.settings import Settings
from app.sharing.admission import Admission, AdmissionStore, SubmitLimits
from app.sharing.fair_share import FairShareStore, Priority
from app.streaming.chunks import ChunkStore
from app.tasks.records import TaskRecords
from app.tasks.shapes import CachedResult as CachedResult
from app.tasks.shapes import CancelOutcome, PendingTask, Transition
from app.tasks.shapes import now as now
from app.webhooks.state import WebhookState


class ResultStore:
    """Reads and writes task records, and what Redis keeps beside them.

    Args:
        redis: a `redis.asyncio.Redis` client (not decoding responses: results are bytes).
        prefix: key prefix, so several deployments or test runs can share a database.
        ttl_s: lifetime of every record, refreshed on each write.
    """

    def __init__(self, redis: Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_s = ttl_s
        self._batch = batch = ScriptBatcher(redis)
        self.records = TaskRecords(redis, batch, prefix=prefix, ttl_s=ttl_s)
        self.admission = AdmissionStore(redis, batch, self.records, prefix=prefix, ttl_s=ttl_s)
        self.fair_share = FairShareStore(redis, batch, prefix=prefix, ttl_s=ttl_s)
        self.chunk_store = ChunkStore(redis, batch, self.records, prefix=prefix, ttl_s=ttl_s)
        self.webhooks = WebhookState(batch, self.records)
        self.fair = self.fair_share.keys

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

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> None:
        with store_errors():
            await self.redis.ping()

    # ---- names ----------------------------------------------------------------------

    def key(self, task_id: str) -> str:
        return self.records.key(task_id)

    def events_channel(self, task_id: str) -> str:
        return self.records.events_channel(task_id)

    def cancel_channel(self, model: str) -> str:
        return self.records.cancel_channel(model)

    def user_index(self, owner: str, model: str | None = None) -> str:
        return self.records.user_index(owner, model)

    def chunks_key(self, task_id: str) -> str:
        return self.chunk_store.key(task_id)

    def limits_key(self, owner: str) -> str:
        return self.admission.limits_key(owner)

    def bucket_key(self, owner: str) -> str:
        return self.admission.bucket_key(owner)

    # ---- task records (app.tasks.records) --------------------------------------------

    async def create_pending(self, tasks: list[PendingTask]) -> None:
        await self.records.create_pending(tasks)

    async def start(self, task_id: str, **start: Any) -> Transition:
        return await self.records.start(task_id, **start)

    async def succeed(self, task_id: str, **result: Any) -> Transition:
        return await self.records.succeed(task_id, **result)

    async def fail(self, task_id: str, *, error: str, error_code: str, attempts: int) -> Transition:
        return await self.records.fail(
            task_id, error=error, error_code=error_code, attempts=attempts
        )

    async def requeue(self, task_id: str, *, attempts: int, error: str) -> Transition:
        return await self.records.requeue(task_id, attempts=attempts, error=error)

    async def cancelled(self, task_id: str) -> Transition:
        return await self.records.cancelled(task_id)

    async def expire_if_due(self, task_id: str) -> Transition:
        return await self.records.expire_if_due(task_id)

    async def not_accepted(self, task_id: str, *, reason: str) -> Transition:
        return await self.records.not_accepted(task_id, reason=reason)

    async def replay(self, task_id: str) -> Transition:
        return await self.records.replay(task_id)

    async def progress(self, task_id: str, *, fraction: float, message: str) -> Transition:
        return await self.records.progress(task_id, fraction=fraction, message=message)

    async def request_cancel(self, task_id: str, model: str) -> CancelOutcome:
        return await self.records.request_cancel(task_id, model)

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self.records.get(task_id)

    async def get_many(self, task_ids: list[str]) -> list[TaskRecord | None]:
        return await self.records.get_many(task_ids)

    async def task_ids(
        self, owner: str, *, model: str | None, before: tuple[float, str] | None, count: int
    ) -> list[tuple[str, float]]:
        return await self.records.task_ids(owner, model=model, before=before, count=count)

    async def forget(self, owner: str, task_ids: list[str], model: str | None = None) -> None:
        await self.records.forget(owner, task_ids, model)

    parse_event = staticmethod(TaskRecords.parse_event)

    # ---- admission and fair share (app.sharing) -----------------------------------------

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
        return await self.admission.admit(
            tasks,
            owner=owner,
            model=model,
            limits=limits,
            window=window,
            fair_share=fair_share,
            priority=priority,
        )

    async def take_call(self, owner: str, limits: SubmitLimits) -> Admission:
        return await self.admission.take_call(owner, limits)

    async def release_room(self, model: str, owner: str, window: int) -> int:
        return await self.fair_share.release_room(model, owner, window)

    async def is_held(self, model: str, owner: str, task_id: str) -> bool:
        return await self.fair_share.is_held(model, owner, task_id)

    async def released(self, model: str, owner: str, task_id: str) -> None:
        await self.fair_share.released(model, owner, task_id)

    async def share(self, model: str, owner: str) -> tuple[int, int]:
        return await self.fair_share.share(model, owner)

    async def holders(self, model: str) -> list[str]:
        return await self.fair_share.holders(model)

    # ---- chunks and webhooks ----------------------------------------------------------

    async def add_chunk(self, task_id: str, number: int, chunk_json: str) -> int:
        return await self.chunk_store.add(task_id, number, chunk_json)

    async def chunks(self, task_id: str, after: int = 0) -> list[str]:
        return await self.chunk_store.read(task_id, after)

    async def update_webhook(self, task_id: str, **fields: Any) -> bool:
        return await self.webhooks.update(task_id, **fields)
