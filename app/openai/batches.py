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

import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

from app.catalog.catalog import LiveModel
from app.core.lifecycle import WebhookDelivery
from app.core.redis_scripts import ScriptBatcher, load_script, store_errors
from app.openai.batch_input import BatchInput
from app.openai.embeddings import (
    request_payload,
)
from app.openai.errors import NotFound, OpenAIInvalid
from app.openai.files import text
from app.openai.schemas import Batch, BatchError, BatchErrors, RequestCounts
from app.openai.served import count_tokens

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

RECORD_CHUNK = load_script(__file__, "record_chunk")
COUNT_ENDED = load_script(__file__, "count_ended")
UNLOCK = load_script(__file__, "unlock")


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
