"""The consume loop of one model replica: queue → decode → `process_request` → Redis → ack.

Delivery is at-least-once. A message is acked only after its final state is in Redis; a
redelivered task whose result is already stored is acked without running the model again, and
so is a task cancelled while it waited or past its deadline. One bad message never stops the
loop: every outcome ends in ack, retry, reject or requeue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from google.protobuf.message import Message

from app.core.broker import (
    BROKER_ERRORS,
    BrokerError,
    QueueNames,
    persistent_message,
    publish_confirmed,
)
from app.core.envelope import EnvelopeError, created_at, decode_envelope
from app.core.metrics import (
    TASK_LATENCY,
    TASK_RETRIES,
    TASK_RUN_TIME,
    TASKS_FINISHED,
    MetricsRecorder,
)
from app.core.queues import declare_model_queues
from app.core.redis_scripts import StoreError
from app.inference.cache import CachedResult, ResultCache
from app.inference.outcome import InferOutcome
from app.sharing.releaser import (
    DEFAULT_SWEEP_S,
    RELEASE_ERRORS,
    Releaser,
)
from app.tasks.shapes import Transition
from app.tasks.store import ResultStore
from app.webhooks.queue import declare_webhook_queues
from deployments._contract import InvalidInput, ModelSpec, progress_reporter
from deployments._runtime.invoker import ModelInvoker, error_text
from deployments._runtime.progress import ProgressWriter
from deployments._runtime.spec import fair_share_window
from deployments._runtime.streaming import BadChunk, TaskChunks, stream_chunks
from protos.codec import DecodeFailed, message_from_bytes, message_to_json
from protos.task_pb2 import Task, WebhookJob

logger = logging.getLogger(__name__)

# Pause before requeueing a message after a Redis error, so an outage is not a hot loop.
STORE_RETRY_PAUSE_S = 1.0
MAX_ERROR_CHARS = 2000


class TaskCancelled(Exception):  # noqa: N818 - an outcome
    """The task's owner cancelled it while the model ran."""


@dataclass
class ConsumerStats:
    """Counters a replica reports (health, autoscaling, tests)."""

    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    requeued: int = 0
    skipped: int = 0  # deliveries acked without running: final, cancelled or expired already


@dataclass(frozen=True)
class Webhooks:
    """Where the consumer queues the deliveries of tasks it finishes."""

    queue: str
    max_attempts: int


class TaskConsumer:
    """Consumes one model's queue on a channel and runs each task through the model.

    Args:
        spec: the model's `ModelSpec`.
        model: an instance of the decorated class.
        store: where task states and results go.
        publish_timeout_s: bound on publishing a retry or a webhook job.
        metrics: where task outcomes and timings are recorded.
        webhooks: the webhook queue (None: tasks with a callback are not this replica's
            business, as in unit tests).
        progress_interval_s: shortest interval between two progress writes of a task.
        sweep_s: how often held tasks are looked for (fair share), while consuming.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        store: ResultStore,
        *,
        publish_timeout_s: float = 5.0,
        metrics: MetricsRecorder | None = None,
        webhooks: Webhooks | None = None,
        progress_interval_s: float = 0.25,
        cache: ResultCache | None = None,
        sweep_s: float = DEFAULT_SWEEP_S,
    ) -> None:
        self.spec = spec
        self.settings = spec.settings
        self.metrics = metrics or MetricsRecorder()
        self.model = model
        self.store = store
        self.names = QueueNames.for_model(spec.name)
        self.stats = ConsumerStats()
        self._publish_timeout_s = publish_timeout_s
        self._webhooks = webhooks
        self._progress_interval_s = progress_interval_s
        self.invoker = ModelInvoker(spec, model, metrics=self.metrics, cache=cache)
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        # The model call of each task running here, so a cancel request can stop it.
        self._running: dict[str, asyncio.Task[tuple[Message, int]]] = {}
        self._cancelling: set[str] = set()
        # Fair share: owners who may have a held task to move in, now that one of theirs ended.
        self.releaser: Releaser | None = None
        self._releases_due: set[str] = set()
        self._sweep_s = sweep_s
        self._sweeper: asyncio.Task[None] | None = None

    async def answer(
        self, payload: bytes, call: Callable[[Message], Awaitable[Message]] | None = None
    ) -> InferOutcome:
        """A synchronous call (see `ModelInvoker.answer`)."""
        return await self.invoker.answer(payload, call)

    def answer_stream(self, payload: bytes) -> AsyncIterator[InferOutcome]:
        """A synchronous call that streams (see `ModelInvoker.answer_stream`)."""
        return self.invoker.answer_stream(payload)

    async def run_batch(self, requests: list[Message]) -> Sequence[Message | BaseException]:
        """One `process_batch` call (see `ModelInvoker.run_batch`)."""
        return await self.invoker.run_batch(requests)

    async def attach(self, channel: AbstractChannel, *, prefetch: int) -> AbstractQueue:
        """Declare the model's queues on `channel` and set its prefetch limit."""
        await channel.set_qos(prefetch_count=prefetch)
        self._channel = channel
        self.releaser = Releaser(
            self.spec.name,
            self.store,
            window=fair_share_window(self.settings, prefetch),
            publish_timeout_s=self._publish_timeout_s,
        )
        self.releaser.attach(channel)
        self._queue = await declare_model_queues(
            channel, self.spec.name, max_attempts=self.settings.max_attempts
        )
        if self._webhooks is not None:
            await declare_webhook_queues(
                channel, self._webhooks.queue, max_attempts=self._webhooks.max_attempts
            )
        return self._queue

    async def start(self) -> None:
        """Begin consuming (call `attach` first)."""
        if self._queue is None:
            raise RuntimeError("attach() a channel before start()")
        self._consumer_tag = await self._queue.consume(self.handle)
        if self.releaser is not None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self.releaser.sweep_forever(self._sweep_s)
            )

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Stop taking messages and wait up to `drain_timeout_s` for in-flight ones.

        What is still unfinished stays unacked: closing the channel returns it to the queue.
        """
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except BROKER_ERRORS as exc:
                logger.warning("cancelling consumer of %s failed: %s", self.spec.name, exc)
            self._consumer_tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=drain_timeout_s)
        except TimeoutError:
            logger.warning(
                "%s: %d task(s) still running at shutdown; they will be redelivered",
                self.spec.name,
                self.stats.in_flight,
            )

    async def run_until_empty(self) -> int:
        """Burst mode: handle messages until the queue is empty, and no held task can move in
        (fair share); return how many were handled."""
        if self._queue is None or self.releaser is None:
            raise RuntimeError("attach() a channel before run_until_empty()")
        handled = 0
        while True:
            while (message := await self._queue.get(no_ack=False, fail=False)) is not None:
                await self.handle(message)
                handled += 1
            if not await self.releaser.sweep():
                return handled

    async def _release_due(self) -> None:
        """Move in the held tasks of owners whose tasks just ended (fair share); what fails
        here is left to the periodic sweep."""
        while self._releases_due and self.releaser is not None:
            owner = self._releases_due.pop()
            try:
                await self.releaser.release(owner)
            except RELEASE_ERRORS as exc:
                logger.warning(
                    "%s: releasing %s's held tasks failed: %s", self.spec.name, owner, exc
                )

    def cancel(self, task_id: str) -> bool:
        """Stop the model call of `task_id` if it runs here (a cancel request); True if so."""
        call = self._running.get(task_id)
        if call is None or call.done():
            return False
        self._cancelling.add(task_id)
        call.cancel()
        return True

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Process one delivery to its end; never raises."""
        self.stats.in_flight += 1
        self._idle.clear()
        try:
            await self._handle(message)
        except Exception:  # last line of defence: keep the loop alive, let it come back
            logger.exception("%s: unexpected error; requeueing message", self.spec.name)
            await self._settle(message.nack(requeue=True))
            self.stats.requeued += 1
        try:
            await self._release_due()
        finally:
            self.stats.in_flight -= 1
            if self.stats.in_flight == 0:
                self._idle.set()

    async def _handle(self, message: AbstractIncomingMessage) -> None:
        try:
            task = decode_envelope(message.body)
        except EnvelopeError as exc:
            logger.error("%s: dead-lettering undecodable message: %s", self.spec.name, exc)
            await self._dead_letter(message)
            return
        try:
            await self._run(task, message)
        except (StoreError, BrokerError) as exc:
            # The outcome could not be recorded: leave the task to a later delivery.
            logger.warning("%s: task %s requeued: %s", self.spec.name, task.task_id, exc)
            await asyncio.sleep(STORE_RETRY_PAUSE_S)
            await self._settle(message.nack(requeue=True))
            self.stats.requeued += 1

    async def _run(self, task: Task, message: AbstractIncomingMessage) -> None:
        started = await self.store.start(
            task.task_id,
            attempt=task.attempt,
            model=task.model,
            owner=task.owner,
            created_at=created_at(task),
            version=self.spec.version,
        )
        if not started.written or started.status is not None and started.status.is_final:
            # Final already (a redelivery), cancelled while it waited, or past its deadline.
            await self._after_final(task, started)
            await self._settle(message.ack())
            self.stats.skipped += 1
            return
        try:
            request = message_from_bytes(task.payload, self.spec.request)
        except DecodeFailed as exc:
            await self._fail(task, message, str(exc), "bad_payload", dead_letter=True)
            return

        try:
            response, chunks = await self._invoke(task.task_id, request)
        except TaskCancelled:
            await self._after_final(task, await self.store.cancelled(task.task_id))
            await self._settle(message.ack())
            self.stats.cancelled += 1
            return
        except InvalidInput as exc:
            await self._fail(task, message, str(exc), "invalid_input", dead_letter=False)
            return
        except BadChunk as exc:
            await self._fail(task, message, str(exc), "bad_response", dead_letter=True)
            return
        except Exception as exc:  # the model failed: retry, or fail for good
            await self._model_failed(task, message, exc)
            return

        if not isinstance(response, self.spec.response):
            detail = (
                f"process_request returned {type(response).__name__}, "
                f"expected {self.spec.response.__name__}"
            )
            await self._fail(task, message, detail, "bad_response", dead_letter=True)
            return
        answer = CachedResult(response.SerializeToString(), message_to_json(response))
        transition = await self.store.succeed(
            task.task_id,
            result=answer.result,
            result_json=answer.result_json,
            attempts=task.attempt,
            chunks=chunks,
        )
        await self._after_final(task, transition)
        await self.invoker.remember(task.payload, answer)
        await self._settle(message.ack())
        self.stats.succeeded += 1

    async def _invoke(self, task_id: str, request: Message) -> tuple[Message, int]:
        """Run the model once, as a task of its own that a cancel request can stop; time the
        attempt whatever its outcome. The response, and how many chunks it streamed."""
        writer = ProgressWriter(self.store, task_id, interval_s=self._progress_interval_s)
        token = progress_reporter.set(writer)
        started = time.perf_counter()
        try:
            call = asyncio.ensure_future(self._call_task(task_id, request))  # copies the context
        finally:
            progress_reporter.reset(token)
        self._running[task_id] = call
        try:
            return await call
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task_id in self._cancelling and (current is None or not current.cancelling()):
                raise TaskCancelled from None
            raise
        finally:
            self._running.pop(task_id, None)
            self._cancelling.discard(task_id)
            await writer.close()
            self.metrics.observe(TASK_RUN_TIME, time.perf_counter() - started, self.spec.name)

    async def _call_task(self, task_id: str, request: Message) -> tuple[Message, int]:
        """One task through the model; a streaming model's chunks are written as they come
        (`deployments._runtime.streaming`)."""
        if not self.spec.streams:
            return await self.invoker.call(request), 0
        chunks = TaskChunks(self.store, task_id, self.spec.response)

        async def run() -> Message:
            async for chunk in stream_chunks(self.spec, self.model, request):
                if not await chunks.add(chunk):
                    break  # the task ended elsewhere (a duplicate delivery finished it)
            return await chunks.result()

        return await self.invoker.bounded(run()), chunks.count

    async def close(self) -> None:
        """Release the model's batcher (after `stop`)."""
        await self.invoker.close()

    async def _model_failed(
        self, task: Task, message: AbstractIncomingMessage, exc: Exception
    ) -> None:
        error = error_text(exc)
        if task.attempt >= self.settings.max_attempts:
            logger.warning(
                "%s: task %s failed after %d attempt(s): %s",
                self.spec.name,
                task.task_id,
                task.attempt,
                error,
            )
            await self._fail(task, message, error, "model_error", dead_letter=True)
            return
        await self._schedule_retry(task, error)
        await self._settle(message.ack())
        self.stats.retried += 1
        self.metrics.inc(TASK_RETRIES, self.spec.name)

    async def _schedule_retry(self, task: Task, error: str) -> None:
        """Republish the task for its next attempt into the retry queue of that attempt."""
        if self._channel is None:
            raise BrokerError("no channel to publish a retry on")
        retry = Task()
        retry.CopyFrom(task)
        retry.attempt = task.attempt + 1
        delay_s = self.settings.retry_backoff_s * (2 ** (task.attempt - 1))
        await publish_confirmed(
            self._channel,
            self.names.retry(task.attempt),
            persistent_message(
                retry.SerializeToString(), message_id=task.task_id, expiration_s=delay_s
            ),
            timeout_s=self._publish_timeout_s,
        )
        logger.info(
            "%s: task %s attempt %d failed (%s); retrying in %.2fs",
            self.spec.name,
            task.task_id,
            task.attempt,
            error,
            delay_s,
        )
        # A cancel that came meanwhile makes this `cancelled`; the retry is then skipped.
        await self._after_final(
            task, await self.store.requeue(task.task_id, attempts=task.attempt, error=error)
        )

    async def _fail(
        self,
        task: Task,
        message: AbstractIncomingMessage,
        error: str,
        code: str,
        *,
        dead_letter: bool,
    ) -> None:
        transition = await self.store.fail(
            task.task_id, error=error, error_code=code, attempts=task.attempt
        )
        await self._after_final(task, transition)
        self.stats.failed += 1
        if dead_letter:
            await self._dead_letter(message)
        else:
            await self._settle(message.ack())

    async def _after_final(self, task: Task, transition: Transition) -> None:
        """Count a task this write made final, and queue its webhook (before the ack, so a
        replica dying in between leaves the task to be redelivered and queued again)."""
        status = transition.status
        if status is None or not status.is_final:
            return
        if transition.owner_held:
            self._releases_due.add(task.owner)
        if transition.written:
            self.metrics.inc(TASKS_FINISHED, self.spec.name, status.value)
            created = created_at(task)
            if created > 0:
                self.metrics.observe(TASK_LATENCY, max(0.0, time.time() - created), self.spec.name)
        if transition.webhook_url and self._webhooks is not None:
            await self._queue_webhook(task.task_id)

    async def _queue_webhook(self, task_id: str) -> None:
        if self._channel is None or self._webhooks is None:
            raise BrokerError("no channel to queue a webhook on")
        await publish_confirmed(
            self._channel,
            self._webhooks.queue,
            persistent_message(
                WebhookJob(task_id=task_id, attempt=1).SerializeToString(), message_id=task_id
            ),
            timeout_s=self._publish_timeout_s,
        )

    async def _dead_letter(self, message: AbstractIncomingMessage) -> None:
        # The work queue's dead-letter exchange routes a rejected message to `<model>.dlq`.
        await self._settle(message.reject(requeue=False))
        self.stats.dead_lettered += 1

    async def _settle(self, settlement: Any) -> None:
        """Ack/nack/reject, tolerating a channel already gone (the broker redelivers then)."""
        try:
            await settlement
        except BROKER_ERRORS as exc:
            logger.warning("%s: could not settle a message: %s", self.spec.name, exc)
