"""A model's dead-letter queue (`<model>.dlq`), for admins: look without consuming, replay,
purge.

Looking uses `basic.get` without acking on a channel of its own: closing the channel hands
every message back to the queue, in order, so a listing never takes anything. A replay makes
the task `pending` again before it publishes the envelope (attempt 1) to the model's queue,
and acks the dead letter only after the broker confirmed that publish: a failure anywhere
leaves the dead letter where it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelClosed

from app.core.broker import (
    BrokerError,
    Publisher,
    QueueNames,
    persistent_message,
    publish_confirmed,
)
from app.core.envelope import EnvelopeError, decode_envelope
from app.core.errors import QueueNotFound
from app.core.lifecycle import TaskRecord
from app.core.redis_scripts import StoreError
from app.tasks.store import ResultStore
from protos.task_pb2 import Task

logger = logging.getLogger(__name__)

# The most dead letters one call looks through (a listing shows at most `limit` of them).
MAX_SCAN = 10_000


@dataclass(frozen=True)
class DeadLetter:
    """One message of a dead-letter queue, with what its task record says about it."""

    task_id: str
    owner: str
    attempts: int
    # Why RabbitMQ dead-lettered it: `rejected` (the model failed it for good, or it could
    # not be decoded), `expired`, `maxlen`, or `delivery_limit`.
    reason: str
    dead_lettered_at: datetime | None
    error: str
    error_code: str


class DeadLetters:
    """The dead-letter queues of models, through the gateway's broker connection."""

    def __init__(self, publisher: Publisher, store: ResultStore) -> None:
        self._publisher = publisher
        self._store = store

    async def depth(self, model: str) -> int | None:
        """Messages in the model's dead-letter queue (None: it has none)."""
        name = QueueNames.for_model(model).dead_letter
        return (await self._publisher.queue_lengths([name], max_age_s=0))[name]

    async def peek(self, model: str, limit: int) -> list[DeadLetter]:
        """The first `limit` dead letters, oldest first, left in the queue."""
        async with self._publisher.fresh_channel() as channel:
            queue = await _dead_letter_queue(channel, model)
            messages: list[AbstractIncomingMessage] = []
            while len(messages) < limit:
                message = await _get(queue)
                if message is None:
                    break
                messages.append(message)
        # Leaving the block closed the channel: every message is back in the queue.
        envelopes = [_envelope(m) for m in messages]
        records = await self._store.get_many([e.task_id if e else "" for e in envelopes])
        letters = []
        for message, task, record in zip(messages, envelopes, records, strict=True):
            death = _first_death(message)
            letters.append(
                DeadLetter(
                    task_id=task.task_id if task else str(message.message_id or ""),
                    owner=task.owner if task else "",
                    attempts=task.attempt if task else 0,
                    reason=str(death.get("reason", "")),
                    dead_lettered_at=_when(death.get("time")),
                    error=(record.fields.get("error", "") if record else "")
                    or ("undecodable message" if task is None else ""),
                    error_code=record.fields.get("error_code", "") if record else "",
                )
            )
        return letters

    async def replay(self, model: str, task_ids: set[str] | None) -> list[str]:
        """Send dead letters (all, or those of `task_ids`) back to the model's queue, each at
        attempt 1 with its task `pending` again; return the replayed task ids in order."""
        names = QueueNames.for_model(model)
        replayed: list[str] = []
        async with self._publisher.fresh_channel() as channel:
            queue = await _dead_letter_queue(channel, model)
            for _ in range(MAX_SCAN):
                message = await _get(queue)
                if message is None:
                    break
                task = _envelope(message)
                if task is None or (task_ids is not None and task.task_id not in task_ids):
                    continue  # stays: unacked, it goes back to the queue with the channel
                task.attempt = 1
                before = await self._store.get(task.task_id)
                await self._store.replay(task.task_id)
                try:
                    await publish_confirmed(
                        channel,
                        names.work,
                        persistent_message(task.SerializeToString(), message_id=task.task_id),
                        timeout_s=30,
                    )
                except BaseException:
                    # The letter stays (unacked, it goes back); so does the task's failure.
                    await self._restore(task.task_id, before)
                    raise
                await message.ack()
                replayed.append(task.task_id)
        return replayed

    async def _restore(self, task_id: str, before: TaskRecord | None) -> None:
        if before is None:
            return
        try:
            await self._store.fail(
                task_id,
                error=before.fields.get("error", ""),
                error_code=before.fields.get("error_code", ""),
                attempts=before.attempts,
            )
        except StoreError as exc:
            logger.error("task %s stays pending after a failed replay: %s", task_id, exc)

    async def purge(self, model: str) -> int:
        """Delete every dead letter of the model; return how many there were."""
        async with self._publisher.fresh_channel() as channel:
            queue = await _dead_letter_queue(channel, model)
            result = await queue.purge()
        return int(getattr(result, "message_count", 0) or 0)


async def _dead_letter_queue(channel: AbstractChannel, model: str) -> AbstractQueue:
    name = QueueNames.for_model(model).dead_letter
    try:
        return await channel.declare_queue(name, passive=True)
    except ChannelClosed as exc:  # a passive declare of a missing queue closes the channel
        raise QueueNotFound(f"model {model!r} has no dead-letter queue {name!r}") from exc


async def _get(queue: AbstractQueue) -> AbstractIncomingMessage | None:
    try:
        return await queue.get(no_ack=False, fail=False, timeout=10)
    except TimeoutError as exc:
        raise BrokerError("reading the dead-letter queue timed out") from exc


def _envelope(message: AbstractIncomingMessage) -> Task | None:
    try:
        return decode_envelope(message.body)
    except EnvelopeError:
        return None


def _first_death(message: AbstractIncomingMessage) -> dict[str, Any]:
    deaths = (message.headers or {}).get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        return deaths[0]
    return {}


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return None
