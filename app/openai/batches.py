"""The OpenAI Batch API on the platform's queues: a batch's lines become tasks of its model.

`BatchStore` keeps each batch in Redis; `BatchWorker` (one per gateway replica) moves every
active batch on, a batch at a time per replica under a short Redis lock:

1. dispatch: submit the next lines as tasks through the gateway's `Submitter`, so the owner's
   quotas and fair share apply. A chunk refused for the owner's limits (429) is retried
   smaller, later; every chunk carries an idempotency key, so a worker that dies between the
   submit and recording it never queues a line twice;
2. count: the statuses of the tasks not yet known final, so `request_counts` are live;
3. finish: once every line has ended, write the output file (one line per `custom_id`, the
   response or the error) and mark the batch `completed`.

Cancelling (or passing the completion window) stops dispatch at the next turn (within
`TURN_S`), cancels the queued tasks and ends the batch `cancelled` (or `expired`) with an
output file of the lines that ran. Tasks are durable as every task is: a replica killed
mid-batch leaves its tasks to another, and each line's task ends once.

Keys (prefix `<redis_prefix>:oai:batch:<id>`): the hash itself, `:payloads` (each line's
request message), `:lines` (each line's custom_id and output options), `:tasks` (the task id
of each dispatched line), `:open` (dispatched tasks not yet counted), `:lock`; plus
`<redis_prefix>:oai:batches:active` and `<redis_prefix>:oai:batches:<owner>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from app.catalog import LiveModel
from app.core.errors import AppError, TooManyRequests
from app.core.lifecycle import TaskRecord, TaskStatus, WebhookDelivery
from app.core.redis_batch import LuaScript, ScriptBatcher
from app.core.store import StoreError, store_errors
from app.openai.batch_input import BatchInput
from app.openai.embeddings import (
    embedding_model,
    embedding_of,
    embeddings_body,
    request_payload,
)
from app.openai.errors import NotFound, OpenAIInvalid
from app.openai.files import PURPOSE_OUTPUT, FileStore, text
from app.openai.schemas import Batch, BatchError, BatchErrors, RequestCounts
from app.openai.served import count_tokens
from app.submission import SubmitOptions

logger = logging.getLogger(__name__)

# How often a worker turns over the active batches (while there are some).
TURN_S = 0.25
IDLE_S = 1.0
# Lines one submit takes at most; a chunk refused for the owner's limits is halved.
MAX_CHUNK = 256
# How long one worker may hold a batch (renewed each turn; a dead worker's passes on).
LOCK_S = 10.0
# Records read per round trip when counting or writing the output.
READ_CHUNK = 500
COMPLETION_WINDOW_S = {"24h": 24 * 3600}
ENDED = ("completed", "failed", "expired", "cancelled")

# Record a chunk's tasks, once: only if `dispatched` is still where the chunk starts.
# KEYS: batch hash, :tasks, :open. ARGV: start, ttl, task ids...
_RECORD_CHUNK = LuaScript("""
if tonumber(redis.call('HGET', KEYS[1], 'dispatched') or '-1') ~= tonumber(ARGV[1]) then
  return 0
end
local n = #ARGV - 2
redis.call('RPUSH', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[3], unpack(ARGV, 3))
redis.call('HINCRBY', KEYS[1], 'dispatched', n)
redis.call('HDEL', KEYS[1], 'chunk')
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('EXPIRE', KEYS[3], ARGV[2])
return n
""")

# Count tasks that ended: each once, whichever worker sees it first.
# KEYS: batch hash, :open. ARGV: pairs of (task id, 'completed' | 'failed').
_COUNT_ENDED = LuaScript("""
local counted = 0
for i = 1, #ARGV, 2 do
  if redis.call('SREM', KEYS[2], ARGV[i]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1], 1)
    counted = counted + 1
  end
end
return counted
""")

# Give a lock back only if it is still ours.
_UNLOCK = LuaScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")


@dataclass(frozen=True)
class BatchKeys:
    prefix: str

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:oai:batch:{batch_id}"

    def part(self, batch_id: str, name: str) -> str:
        return f"{self.batch(batch_id)}:{name}"

    @property
    def active(self) -> str:
        return f"{self.prefix}:oai:batches:active"

    def owned(self, owner: str) -> str:
        return f"{self.prefix}:oai:batches:{owner}"


def _int(value: Any) -> int | None:
    return None if value in (None, b"", "") else int(value)


def batch_of(batch_id: str, raw: dict[Any, Any]) -> Batch:
    """The API's batch object from the batch's hash."""
    fields = {text(k): text(v) for k, v in raw.items()}
    errors = json.loads(fields["errors"]) if fields.get("errors") else None
    return Batch(
        id=batch_id,
        endpoint=fields["endpoint"],
        errors=BatchErrors(data=[BatchError(**e) for e in errors]) if errors else None,
        input_file_id=fields["input_file_id"],
        completion_window=fields["completion_window"],
        status=fields["status"],  # type: ignore[arg-type]
        output_file_id=fields.get("output_file_id") or None,
        created_at=int(fields["created_at"]),
        in_progress_at=_int(fields.get("in_progress_at")),
        expires_at=_int(fields.get("expires_at")),
        finalizing_at=_int(fields.get("finalizing_at")),
        completed_at=_int(fields.get("completed_at")),
        failed_at=_int(fields.get("failed_at")),
        expired_at=_int(fields.get("expired_at")),
        cancelling_at=_int(fields.get("cancelling_at")),
        cancelled_at=_int(fields.get("cancelled_at")),
        request_counts=RequestCounts(
            total=int(fields.get("total", 0)),
            completed=int(fields.get("completed", 0)),
            failed=int(fields.get("failed", 0)),
        ),
        metadata=json.loads(fields["metadata"]) if fields.get("metadata") else None,
        webhook=_webhook(fields),
        model=fields.get("model") or None,
    )


def _webhook(fields: dict[str, str]) -> WebhookDelivery | None:
    if not fields.get("webhook_url"):
        return None
    delivered = fields.get("webhook_delivered_at")
    return WebhookDelivery(
        url=fields["webhook_url"],
        status=fields.get("webhook_status") or "pending",  # type: ignore[arg-type]
        attempts=int(fields.get("webhook_attempts") or 0),
        last_error=fields.get("webhook_error") or None,
        delivered_at=datetime.fromtimestamp(float(delivered), tz=UTC) if delivered else None,
    )


class BatchStore:
    """Batches in Redis, each owned by one user (anyone else gets 404)."""

    def __init__(self, redis: Redis, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.scripts = ScriptBatcher(redis)
        self.keys = BatchKeys(prefix)
        self.ttl_s = ttl_s

    async def create(
        self,
        owner: str,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str,
        metadata: dict[str, str] | None,
        parsed: BatchInput | None,
        model: LiveModel | None,
        errors: list[BatchError] | None = None,
        callback_url: str | None = None,
    ) -> Batch:
        """A new batch: `in_progress` with its lines, or `failed` with `errors`; with a
        `callback_url`, its end is delivered there."""
        now = int(time.time())
        batch_id = "batch_" + secrets.token_hex(12)
        fields: dict[str, Any] = {
            "owner": owner,
            "endpoint": endpoint,
            "input_file_id": input_file_id,
            "completion_window": completion_window,
            "created_at": now,
            "expires_at": now + COMPLETION_WINDOW_S[completion_window],
            "metadata": json.dumps(metadata) if metadata else "",
            "total": 0,
            "dispatched": 0,
            "completed": 0,
            "failed": 0,
            "webhook_url": callback_url or "",
        }
        if errors or parsed is None or model is None:
            fields.update(
                status="failed",
                failed_at=now,
                errors=json.dumps([e.model_dump() for e in errors or []]),
            )
        else:
            fields.update(
                status="in_progress",
                in_progress_at=now,
                total=len(parsed.lines),
                model=model.view.name,
            )
        key = self.keys.batch(batch_id)
        with store_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=fields)  # type: ignore[arg-type,unused-ignore]
                if fields["status"] == "in_progress":
                    assert parsed is not None and model is not None  # noqa: S101
                    for start in range(0, len(parsed.lines), 1000):
                        part = parsed.lines[start : start + 1000]
                        pipe.rpush(
                            self.keys.part(batch_id, "payloads"),
                            *(request_payload(model, line.text) for line in part),
                        )
                        pipe.rpush(
                            self.keys.part(batch_id, "lines"),
                            *(
                                json.dumps(
                                    [
                                        line.custom_id,
                                        line.encoding_format,
                                        line.dimensions,
                                        count_tokens([line.text]),
                                    ]
                                )
                                for line in part
                            ),
                        )
                    for name in ("payloads", "lines"):
                        pipe.expire(self.keys.part(batch_id, name), self.ttl_s)
                if fields["status"] == "in_progress" or callback_url:
                    # A worker moves it on; one that failed at once still has a webhook to send.
                    pipe.sadd(self.keys.active, batch_id)
                pipe.expire(key, self.ttl_s)
                pipe.zadd(self.keys.owned(owner), {batch_id: now})
                pipe.zremrangebyscore(self.keys.owned(owner), "-inf", now - self.ttl_s)
                pipe.expire(self.keys.owned(owner), self.ttl_s)
                await pipe.execute()
        return await self.get(owner, batch_id)

    async def get(self, owner: str, batch_id: str) -> Batch:
        """One of `owner`'s batches, its counts as of the last worker turn.

        Raises:
            NotFound: no such batch, or not `owner`'s.
        """
        with store_errors():
            raw = await self.redis.hgetall(self.keys.batch(batch_id))
        if not raw or text(raw.get(b"owner", b"")) != owner:
            raise NotFound(f"No such batch: {batch_id}")
        return batch_of(batch_id, raw)

    async def list(self, owner: str, *, after: str | None, limit: int) -> tuple[list[Batch], bool]:
        """`owner`'s batches, newest first, after the batch `after`; and whether more follow."""
        with store_errors():
            ids = [text(i) for i in await self.redis.zrevrange(self.keys.owned(owner), 0, -1)]
        if after is not None:
            ids = ids[ids.index(after) + 1 :] if after in ids else []
        batches: list[Batch] = []
        for batch_id in ids:
            if len(batches) == limit:
                return batches, True
            with contextlib.suppress(NotFound):
                batches.append(await self.get(owner, batch_id))
        return batches, False

    async def ended(self, batch_id: str) -> tuple[str, str, Batch] | None:
        """An ended batch's owner, callback URL and object, for delivering its end; None if
        it is gone, not ended, has no callback, or its delivery is over."""
        with store_errors():
            raw = await self.redis.hgetall(self.keys.batch(batch_id))
        if not raw:
            return None
        batch = batch_of(batch_id, raw)
        if batch.status not in ENDED or batch.webhook is None:
            return None
        if batch.webhook.status in ("delivered", "failed"):
            return None  # a duplicate job
        return text(raw[b"owner"]), batch.webhook.url, batch

    async def update_webhook(self, batch_id: str, **fields: Any) -> None:
        """Record a delivery outcome of the batch's end (`webhook_<name>` fields)."""
        key = self.keys.batch(batch_id)
        values = {f"webhook_{k}": "" if v is None else str(v) for k, v in fields.items()}
        with store_errors():
            if await self.redis.exists(key):
                await self.redis.hset(key, mapping=values)  # type: ignore[arg-type,unused-ignore]

    async def cancel(self, owner: str, batch_id: str) -> Batch:
        """Ask to cancel: `cancelling` now; the worker stops dispatch and cancels its tasks.

        Raises:
            NotFound: as `get`.
            OpenAIInvalid: the batch has ended already.
        """
        batch = await self.get(owner, batch_id)
        if batch.status in ENDED:
            raise OpenAIInvalid(f"the batch is {batch.status}: nothing to cancel", param=None)
        if batch.status != "cancelling":
            with store_errors():
                await self.redis.hset(
                    self.keys.batch(batch_id),
                    mapping={"status": "cancelling", "cancelling_at": int(time.time())},
                )
        return await self.get(owner, batch_id)


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
                    await self._scripts.call(_UNLOCK, [lock], [self._me])
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
                _RECORD_CHUNK,
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
                    _COUNT_ENDED,
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
