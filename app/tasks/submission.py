"""`Submitter`: how the gateway accepts tasks, single or batched, exactly once per idempotency key.

A submit is accepted (202) only once every task is `pending` in Redis and RabbitMQ confirmed
every persistent message. When the broker refuses or does not confirm in time, every task of
the submit is marked failed (`not_accepted`) before the client hears 503: a message that did
reach the queue is then acknowledged by its replica without running, so a task the client was
told failed never runs, and a batch is all or nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from app.core.broker import BrokerError, Publisher, QueueMissing
from app.core.envelope import created_at, new_envelope
from app.core.errors import Conflict, InvalidInput, ModelUnavailable, Unavailable
from app.core.metrics import TASKS_SUBMITTED, MetricsRecorder
from app.core.redis_scripts import StoreError
from app.inference.caller import ModelCaller
from app.sharing.admission import Admission, SubmitLimits
from app.sharing.fair_share import DEFAULT_WINDOW, Priority, declare_hold_queue, hold_queue
from app.sharing.headers import bucket_headers
from app.sharing.refusals import refusal
from app.tasks.idempotency import IdempotencyKeys, KeyInProgress, KeyReused
from app.tasks.shapes import PendingTask, now
from app.tasks.store import ResultStore
from protos.task_pb2 import Task
from registry.schemas import ModelView

logger = logging.getLogger(__name__)

NOT_ACCEPTED = (
    "the message broker did not accept the submit; nothing will run: submit again "
    "(with the same Idempotency-Key, if you sent one, once this answer was 503)"
)


@dataclass(frozen=True)
class SubmitOptions:
    """What a client may add to a submit besides the request messages."""

    callback_url: str | None = None
    deadline_s: float | None = None
    idempotency_key: str | None = None
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True)
class Accepted:
    """A submit that was accepted: its task ids in order, and its owner's submit bucket (its
    rate and depth, and the tokens left; -1: no limit) for the rate-limit headers."""

    task_ids: list[str]
    tokens_left: float = -1.0
    rate: float = -1.0
    burst: float = -1.0

    def rate_headers(self) -> dict[str, str]:
        return bucket_headers(
            "submits", rate=self.rate, burst=self.burst, remaining=self.tokens_left
        )


class IdempotencyConflict(InvalidInput):
    code = "idempotency_key_reused"


class IdempotencyInProgress(Conflict):
    """A repeat of a submit whose first request is still being processed."""

    code = "idempotency_key_in_progress"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


def request_digest(model: str, kind: str, payloads: Sequence[bytes], options: SubmitOptions) -> str:
    """What makes two submits the same request: model, kind, messages and options.

    Payloads are deterministic protobuf serializations, so the JSON and the protobuf form of one
    message digest alike.
    """
    digest = hashlib.sha256()
    for part in (
        model,
        kind,
        options.callback_url or "",
        repr(options.deadline_s),
        options.priority.value,
    ):
        digest.update(part.encode())
        digest.update(b"\0")
    for payload in payloads:
        digest.update(len(payload).to_bytes(8, "big"))
        digest.update(payload)
    return digest.hexdigest()


class Submitter:
    """Creates, indexes and publishes tasks for the gateway's submit routes.

    A request the model's cache has answered before becomes a task that is `succeeded` at
    once with that answer, and is not published.
    """

    def __init__(
        self,
        store: ResultStore,
        publisher: Publisher,
        idempotency: IdempotencyKeys,
        caller: ModelCaller,
        *,
        io_timeout_s: float,
        metrics: MetricsRecorder,
        enqueue_webhook: Callable[[str], Awaitable[None]],
        limits: SubmitLimits,
        fair_share: bool = True,
    ) -> None:
        self.limits = limits
        self._fair_share = fair_share
        self._metrics = metrics
        self._caller = caller
        self._enqueue_webhook = enqueue_webhook
        self._store = store
        self._publisher = publisher
        self._idempotency = idempotency
        self._timeout_s = io_timeout_s

    async def submit(
        self,
        *,
        model: ModelView,
        owner: str,
        payloads: Sequence[bytes],
        options: SubmitOptions,
        kind: str = "task",
    ) -> Accepted:
        """Accept one task per payload, within the owner's limits.

        Raises:
            IdempotencyConflict: the key was used for another request.
            TooManyRequests: a limit of the owner's was reached (nothing was created).
            PriorityNotAllowed: the priority is above what the owner may use.
            ModelUnavailable: the model has no queue yet.
            Unavailable: Redis or RabbitMQ could not take the tasks (nothing will run).
        """
        name = model.name
        envelopes = [new_envelope(model=name, owner=owner, payload=p) for p in payloads]
        ids = [envelope.task_id for envelope in envelopes]
        key = options.idempotency_key
        digest = ""
        if key is not None:
            digest = request_digest(name, kind, payloads, options)
            try:
                earlier = await self._idempotency.claim(owner, key, digest, ids)
            except KeyReused as exc:
                raise IdempotencyConflict(str(exc)) from exc
            except KeyInProgress as exc:
                raise IdempotencyInProgress(f"{exc}; try again in a moment for its answer") from exc
            if earlier is not None:
                return Accepted(earlier)
        try:
            admission = await self._accept(model, owner, envelopes, options)
            if key is not None:
                await self._complete(owner, key, digest, ids)
        except BaseException:
            if key is not None:
                try:
                    await self._idempotency.release(owner, key)
                except StoreError as exc:
                    logger.warning("could not release an idempotency key: %s", exc)
            raise
        self._metrics.inc(TASKS_SUBMITTED, name, amount=len(ids))
        return Accepted(ids, admission.tokens_left, admission.rate, admission.burst)

    async def _complete(self, owner: str, key: str, digest: str, ids: list[str]) -> None:
        """Mark the key done; should Redis fail here, the claim lapses by itself (a repeat
        after that runs the request again), and the tasks, accepted already, stand."""
        try:
            await self._idempotency.complete(owner, key, digest, ids)
        except StoreError as exc:
            logger.warning("an idempotency key could not be marked done: %s", exc)

    async def _accept(
        self, model: ModelView, owner: str, envelopes: list[Task], options: SubmitOptions
    ) -> Admission:
        submitted = now()
        deadline = submitted + options.deadline_s if options.deadline_s is not None else None
        hits = await self._caller.lookup(model, [e.payload for e in envelopes])
        tasks = [
            PendingTask(
                task_id=envelope.task_id,
                model=model.name,
                owner=owner,
                created_at=created_at(envelope),
                deadline=deadline,
                webhook_url=options.callback_url,
                cached=hit,
                model_version=model.version if hit is not None else None,
                priority=options.priority,
            )
            for envelope, hit in zip(envelopes, hits, strict=True)
        ]
        queued = [(e, t) for e, t in zip(envelopes, tasks, strict=True) if t.cached is None]
        answered = [t for t in tasks if t.cached is not None]
        # "pending" is written before the publish, so a fast replica always finds the record;
        # the owner's limits are checked and the tasks routed in the same step.
        async with asyncio.timeout(self._timeout_s):
            admission = await self._store.admit(
                [t for _, t in queued],
                owner=owner,
                model=model.name,
                limits=self.limits,
                window=model.fair_share_window or DEFAULT_WINDOW,
                fair_share=self._fair_share,
                priority=options.priority,
            )
        if admission.refused is not None:
            raise refusal(admission, model.name)
        results = await asyncio.gather(
            *(
                self._publish(model.name, owner, envelope, route, options.priority)
                for (envelope, _), route in zip(queued, admission.routes, strict=True)
            ),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self._refuse([task.task_id for _, task in queued])
            first = failures[0]
            if isinstance(first, QueueMissing):
                raise ModelUnavailable(f"model {model.name!r} has no queue yet") from first
            if isinstance(first, BrokerError | TimeoutError):
                logger.warning("broker did not accept a submit: %s", first)
                raise Unavailable(NOT_ACCEPTED) from first
            raise first
        # Answered from the cache: created only once the rest is accepted (all or nothing).
        if answered:
            async with asyncio.timeout(self._timeout_s):
                await self._store.create_pending(answered)
            if options.callback_url:
                for task in answered:
                    await self._enqueue_webhook(task.task_id)
        return admission

    async def _publish(
        self, model: str, owner: str, envelope: Task, route: str, priority: Priority
    ) -> None:
        """Into the model's queue ('d'), or the owner's hold queue ('h', declared on first
        use) with the task's priority."""
        body = envelope.SerializeToString()
        if route == "d":
            await self._publisher.publish(model, body, message_id=envelope.task_id)
            return
        queue = hold_queue(model, owner)
        try:
            await self._publisher.publish(
                queue, body, message_id=envelope.task_id, priority=priority.level
            )
        except QueueMissing:
            await self._publisher.declare(lambda c: declare_hold_queue(c, model, owner))
            await self._publisher.publish(
                queue, body, message_id=envelope.task_id, priority=priority.level
            )

    async def _refuse(self, task_ids: list[str]) -> None:
        """Mark every task of a submit that was not wholly accepted as failed."""
        results = await asyncio.gather(
            *(self._store.not_accepted(i, reason=NOT_ACCEPTED) for i in task_ids),
            return_exceptions=True,
        )
        lost = sum(isinstance(r, BaseException) for r in results)
        if lost:
            # Redis is failing too: those records stay pending until they expire; a copy that
            # reached the queue would run. Say so loudly.
            logger.error("%d task(s) of a refused submit could not be marked failed", lost)
