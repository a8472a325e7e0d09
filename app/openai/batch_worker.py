"""`BatchWorker`: one per gateway replica, it moves every active OpenAI batch on, a batch at a
time per replica under a short Redis lock (see `app.openai.batches` for the steps and keys)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from app.catalog.catalog import LiveModel
from app.core.errors import AppError, TooManyRequests
from app.core.lifecycle import TaskRecord, TaskStatus
from app.core.redis_scripts import StoreError, store_errors
from app.openai.batches import (
    COUNT_ENDED,
    ENDED,
    IDLE_S,
    LOCK_S,
    MAX_CHUNK,
    READ_CHUNK,
    RECORD_CHUNK,
    TURN_S,
    UNLOCK,
    BatchStore,
)
from app.openai.embeddings import (
    embedding_model,
    embedding_of,
    embeddings_body,
)
from app.openai.errors import OpenAIInvalid
from app.openai.files import PURPOSE_OUTPUT, FileStore, text
from app.tasks.submission import SubmitOptions

logger = logging.getLogger(__name__)


@dataclass
class _Turn:
    """One batch as a worker turn reads it."""

    batch_id: str
    fields: dict[str, str]

    def __getitem__(self, name: str) -> str:
        return self.fields.get(name, "")

    def number(self, name: str) -> int:
        return int(self.fields.get(name) or 0)


class BatchWorker:
    """Moves every active batch on (dispatch, count, finish); one per gateway replica.

    Args:
        services: the gateway's `Services` (submitter, catalog, store, cancelling).
        batches: where batches live.
        files: where output files go.
    """

    def __init__(self, services: Any, batches: BatchStore, files: FileStore) -> None:
        self._services = services
        self._batches = batches
        self._files = files
        self._redis = batches.redis
        self._scripts = batches.scripts
        self._keys = batches.keys
        self._me = secrets.token_hex(8)
        # Chunk size per batch, halved when the owner's limits refuse one.
        self._chunks: dict[str, int] = {}

    async def run_forever(self) -> None:
        while True:
            busy = False
            try:
                busy = await self.turn()
            except asyncio.CancelledError:
                raise
            except Exception:  # a turn that failed is tried again; the worker lives on
                logger.exception("OpenAI batch worker turn failed")
            await asyncio.sleep(TURN_S if busy else IDLE_S)

    async def turn(self) -> bool:
        """One turn over the active batches; whether any was active."""
        with store_errors():
            ids = [text(i) for i in await self._redis.smembers(self._keys.active)]
        for batch_id in ids:
            lock = self._keys.part(batch_id, "lock")
            with store_errors():
                if not await self._redis.set(lock, self._me, nx=True, px=int(LOCK_S * 1000)):
                    continue
            try:
                await self._advance(batch_id)
            except (StoreError, AppError) as exc:
                logger.warning("batch %s: turn cut short: %s", batch_id, exc)
            finally:
                with contextlib.suppress(StoreError), store_errors():
                    await self._scripts.call(UNLOCK, [lock], [self._me])
        return bool(ids)

    async def _advance(self, batch_id: str) -> None:
        with store_errors():
            raw = await self._redis.hgetall(self._keys.batch(batch_id))
        if not raw:
            await self._redis.srem(self._keys.active, batch_id)
            return
        batch = _Turn(batch_id, {text(k): text(v) for k, v in raw.items()})
        status = batch["status"]
        if status in ENDED:
            await self._ended(batch)
            return
        stopping = status == "cancelling" or time.time() >= batch.number("expires_at")
        if stopping:
            await self._cancel_open(batch)
        elif batch.number("dispatched") < batch.number("total"):
            await self._dispatch(batch)
        await self._count(batch)
        with store_errors():
            counts = await self._redis.hmget(
                self._keys.batch(batch_id), ["dispatched", "completed", "failed", "status"]
            )
        dispatched, completed, failed = (int(c or 0) for c in counts[:3])
        if text(counts[3] or b"") == "cancelling":
            stopping = True
        if completed + failed < dispatched:
            return
        if stopping or dispatched == batch.number("total"):
            await self._finish(batch, stopping=stopping)

    async def _dispatch(self, batch: _Turn) -> None:
        services = self._services
        owner, start = batch["owner"], batch.number("dispatched")
        # A chunk begun before a crash is submitted again as it was (same idempotency key).
        pending = batch["chunk"]
        if pending and int(pending.split(":")[0]) == start:
            size = int(pending.split(":")[1])
        else:
            size = min(self._chunks.get(batch.batch_id, MAX_CHUNK), batch.number("total") - start)
            with store_errors():
                await self._redis.hset(self._keys.batch(batch.batch_id), "chunk", f"{start}:{size}")
        model = await embedding_model(services.catalog, batch["model"])
        await services.ensure_enabled(model.view.name)
        with store_errors():
            payloads = await self._redis.lrange(
                self._keys.part(batch.batch_id, "payloads"), start, start + size - 1
            )
        try:
            accepted = await services.submitter.submit(
                model=model.view,
                owner=owner,
                payloads=payloads,
                options=SubmitOptions(idempotency_key=f"oai-{batch.batch_id}-{start}"),
                kind="batch",
            )
        except TooManyRequests:
            # The owner's limits: a smaller chunk at a later turn (forget this one).
            self._chunks[batch.batch_id] = max(1, size // 2)
            with store_errors():
                await self._redis.hdel(self._keys.batch(batch.batch_id), "chunk")
            return
        self._chunks[batch.batch_id] = min(MAX_CHUNK, size * 2)
        with store_errors():
            await self._scripts.call(
                RECORD_CHUNK,
                [
                    self._keys.batch(batch.batch_id),
                    self._keys.part(batch.batch_id, "tasks"),
                    self._keys.part(batch.batch_id, "open"),
                ],
                [start, self._batches.ttl_s, *accepted.task_ids],
            )

    async def _open_statuses(self, batch: _Turn) -> list[tuple[str, TaskStatus | None]]:
        """The batch's dispatched tasks not yet counted, with their status (None: the record
        expired), read from the status field alone, not the results."""
        with store_errors():
            ids = [
                text(i) for i in await self._redis.smembers(self._keys.part(batch.batch_id, "open"))
            ]
        store = self._services.store
        statuses: list[tuple[str, TaskStatus | None]] = []
        for start in range(0, len(ids), READ_CHUNK):
            part = ids[start : start + READ_CHUNK]
            with store_errors():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for task_id in part:
                        pipe.hget(store.key(task_id), "status")
                    raws = await pipe.execute()
            statuses += [
                (task_id, None if raw is None else TaskStatus(text(raw)))
                for task_id, raw in zip(part, raws, strict=True)
            ]
        return statuses

    async def _count(self, batch: _Turn) -> None:
        """Count the open tasks that ended: each once, as completed or failed."""
        ended: list[str] = []
        for task_id, status in await self._open_statuses(batch):
            if status is None:  # expired with its results: nothing will come
                ended += [task_id, "failed"]
            elif status.is_final:
                ended += [task_id, "completed" if status is TaskStatus.SUCCEEDED else "failed"]
        if ended:
            with store_errors():
                await self._scripts.call(
                    COUNT_ENDED,
                    [self._keys.batch(batch.batch_id), self._keys.part(batch.batch_id, "open")],
                    ended,
                )

    async def _cancel_open(self, batch: _Turn) -> None:
        """Cancel the batch's tasks that have not ended (once per batch)."""
        if batch["cancel_sent"]:
            return
        services = self._services
        for task_id, status in await self._open_statuses(batch):
            if status is None or status.is_final:
                continue
            outcome = await services.store.request_cancel(task_id, batch["model"])
            if outcome.transition.written:
                await services.finished(task_id, batch["model"], outcome.transition)
        with store_errors():
            await self._redis.hset(self._keys.batch(batch.batch_id), "cancel_sent", 1)

    async def _finish(self, batch: _Turn, *, stopping: bool) -> None:
        """Write the output file and end the batch."""
        key = self._keys.batch(batch.batch_id)
        with store_errors():
            await self._redis.hset(key, "finalizing_at", int(time.time()))
        model = None
        with contextlib.suppress(AppError):
            model = await embedding_model(self._services.catalog, batch["model"])
        output = await self._output(batch, model)
        meta = await self._files.create(
            batch["owner"],
            filename=f"{batch.batch_id}_output.jsonl",
            purpose=PURPOSE_OUTPUT,
            content=output,
        )
        now = int(time.time())
        end: dict[str, str | int]
        if not stopping:
            end = {"status": "completed", "completed_at": now}
        elif batch["status"] == "cancelling" or time.time() < batch.number("expires_at"):
            end = {"status": "cancelled", "cancelled_at": now}
        else:
            end = {"status": "expired", "expired_at": now}
        end["output_file_id"] = meta.id
        with store_errors():
            await self._redis.hset(key, mapping=end)  # type: ignore[arg-type,unused-ignore]
        logger.info("batch %s %s", batch.batch_id, end["status"])
        await self._ended(batch)

    async def _ended(self, batch: _Turn) -> None:
        """An ended batch leaves the active ones once its end's webhook, if it has one, is
        queued: a worker that dies in between leaves that to the next turn."""
        if batch["webhook_url"] and not batch["webhook_queued"]:
            await self._services.webhooks.enqueue_batch(batch.batch_id)
            with store_errors():
                await self._redis.hset(self._keys.batch(batch.batch_id), "webhook_queued", 1)
        with store_errors():
            await self._redis.srem(self._keys.active, batch.batch_id)

    async def _output(self, batch: _Turn, model: LiveModel | None) -> bytes:
        """One JSONL line per dispatched line, in the input's order."""
        out: list[bytes] = []
        store = self._services.store
        with store_errors():
            task_ids = [
                text(i)
                for i in await self._redis.lrange(self._keys.part(batch.batch_id, "tasks"), 0, -1)
            ]
        for start in range(0, len(task_ids), READ_CHUNK):
            part = task_ids[start : start + READ_CHUNK]
            with store_errors():
                metas = await self._redis.lrange(
                    self._keys.part(batch.batch_id, "lines"), start, start + len(part) - 1
                )
            records = await store.get_many(part)
            for task_id, meta, record in zip(part, metas, records, strict=True):
                custom_id, encoding_format, dimensions, tokens = json.loads(meta)
                out.append(
                    json.dumps(
                        output_line(
                            task_id,
                            custom_id,
                            record,
                            model,
                            model_name=batch["model"],
                            encoding_format=encoding_format,
                            dimensions=dimensions,
                            tokens=tokens,
                        ),
                        separators=(",", ":"),
                    ).encode()
                )
        return b"\n".join(out) + (b"\n" if out else b"")


def output_line(
    task_id: str,
    custom_id: str,
    record: TaskRecord | None,
    model: LiveModel | None,
    *,
    model_name: str,
    encoding_format: str,
    dimensions: int | None,
    tokens: int,
) -> dict[str, Any]:
    """A line of a batch's output file, in OpenAI's format: the response, or the error."""
    line: dict[str, Any] = {"id": f"batch_req_{task_id}", "custom_id": custom_id}
    if (
        record is not None
        and record.status is TaskStatus.SUCCEEDED
        and record.result is not None
        and model is not None
    ):
        try:
            body = embeddings_body(
                model_name,
                [embedding_of(model, record.result)],
                [],
                encoding_format=encoding_format,
                dimensions=dimensions,
            )
        except OpenAIInvalid as exc:
            return {
                **line,
                "response": None,
                "error": {"code": "invalid_request_error", "message": exc.detail},
            }
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {
            **line,
            "response": {"status_code": 200, "request_id": task_id, "body": body},
            "error": None,
        }
    if record is None:
        error = {"code": "expired", "message": "the task's record expired before the batch ended"}
    elif record.status is TaskStatus.SUCCEEDED:
        error = {
            "code": "model_not_found",
            "message": f"model {model_name!r} is gone: its answer cannot be read",
        }
    else:
        error = {
            "code": record.fields.get("error_code") or record.status.value,
            "message": record.fields.get("error") or f"the task ended {record.status.value}",
        }
    return {**line, "response": None, "error": error}
