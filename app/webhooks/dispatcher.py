"""`WebhookDispatcher`: POSTs final task documents to their callback URLs, from a durable queue.

A task that ends with a callback gets a `WebhookJob` on the webhook queue (published, with a
confirm, by whoever made it final, before that component acknowledged its own work). This
consumer loads the task, signs its document with its owner's secret (Standard Webhooks,
`app.webhooks.signing`) and POSTs it. The end of an OpenAI batch with a callback is delivered
the same way (the job names the batch; the body is its batch object).
A failed attempt goes to the per-attempt waiting room `<queue>.retry.N` for its backoff and
comes back; after the last attempt the delivery is recorded `failed`. The outcome of every
attempt is written to the task document. Delivery is at least once: a receiver may see a
delivery twice (the `webhook-id` header, the task id, names it) and should be idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from app.accounts.users import UserStore
from app.core.broker import BROKER_ERRORS, BrokerError, persistent_message, publish_confirmed
from app.core.metrics import WEBHOOK_DELIVERIES, MetricsRecorder
from app.core.redis_scripts import StoreError
from app.core.settings import Settings
from app.openai.batches import BatchStore
from app.sharing.leases import WEBHOOKS_IN_FLIGHT, WEBHOOKS_PER_HOST, LeaseRefused, Leases
from app.tasks.shapes import now
from app.tasks.store import ResultStore
from app.webhooks.queue import declare_webhook_queues, defer_queue, retry_queue
from app.webhooks.signing import signature_headers
from app.webhooks.targets import (
    CallbackInvalid,
    CallbackRefused,
    Resolver,
    Target,
    resolve_target,
    system_resolver,
)
from protos.task_pb2 import WebhookJob

logger = logging.getLogger(__name__)

USER_AGENT = "model-serving-platform-webhooks/1"
STORE_RETRY_PAUSE_S = 1.0
# A delivery whose owner's or host's deliveries are at their limit waits in this process up to
# TURN_WAIT_S (looking every TURN_LOOK_S), with at most TURN_QUEUE others of its host; then it
# waits DEFER_S in the defer queue, out of the way.
TURN_WAIT_S = 0.5
TURN_LOOK_S = 0.01
TURN_QUEUE = 16
DEFER_S = 1.0
# Deliveries one dispatcher replica holds at once: room for many hosts' turns.
PREFETCH = 256
MAX_ERROR_CHARS = 300


class PermanentFailure(Exception):  # noqa: N818 - an outcome, not a bug
    """A delivery that no retry can fix (its owner is gone)."""


@dataclass(frozen=True)
class Delivery:
    """What one job delivers: the subject's id (the `webhook-id`), its owner, where to, the
    body, and where each attempt's outcome is written (`webhook_<name>` fields)."""

    subject_id: str
    owner: str
    url: str
    body: bytes
    record: Callable[..., Awaitable[Any]]


class WebhookDispatcher:
    """Delivers the jobs of the webhook queue.

    Args:
        store: task records (read for the document, written with the outcome).
        settings: secret, allow-list, attempts, backoff, timeout, queue name.
        http: the client deliveries go through (no redirects followed).
        metrics: where delivery outcomes are counted.
        resolve: how a callback's host name is looked up (once per attempt).
    """

    def __init__(
        self,
        store: ResultStore,
        settings: Settings,
        *,
        http: httpx.AsyncClient,
        metrics: MetricsRecorder | None = None,
        resolve: Resolver = system_resolver,
    ) -> None:
        self.store = store
        self.settings = settings
        self.http = http
        self.metrics = metrics or MetricsRecorder()
        self.queue_name = settings.webhook_queue
        self._users = UserStore(store.redis, prefix=settings.redis_prefix)
        self._batches = BatchStore(
            store.redis, prefix=settings.redis_prefix, ttl_s=settings.openai_file_ttl_s
        )
        self._leases = Leases(store.redis, prefix=settings.redis_prefix)
        self._resolve = resolve
        # Jobs of each receiving host waiting in this process for their turn.
        self._waiting: dict[str, int] = {}
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def attach(self, channel: AbstractChannel, *, prefetch: int = PREFETCH) -> None:
        await channel.set_qos(prefetch_count=prefetch)
        self._channel = channel
        self._queue = await declare_webhook_queues(
            channel, self.queue_name, max_attempts=self.settings.webhook_max_attempts
        )

    async def start(self) -> None:
        if self._queue is None:
            raise RuntimeError("attach() a channel before start()")
        self._consumer_tag = await self._queue.consume(self.handle)

    async def stop(self, *, drain_timeout_s: float) -> None:
        """Stop taking jobs; wait for those under way (the rest go back to the queue)."""
        if self._queue is not None and self._consumer_tag is not None:
            try:
                await self._queue.cancel(self._consumer_tag)
            except BROKER_ERRORS as exc:
                logger.warning("cancelling the webhook consumer failed: %s", exc)
            self._consumer_tag = None
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=drain_timeout_s)
        except TimeoutError:
            logger.warning("%d webhook delivery(ies) unfinished at shutdown", self._in_flight)

    async def run_until_empty(self) -> int:
        """Burst mode: deliver until the queue is empty; return how many jobs were handled."""
        if self._queue is None:
            raise RuntimeError("attach() a channel before run_until_empty()")
        handled = 0
        while (message := await self._queue.get(no_ack=False, fail=False)) is not None:
            await self.handle(message)
            handled += 1
        return handled

    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Handle one job to its end; never raises."""
        self._in_flight += 1
        self._idle.clear()
        try:
            try:
                job = WebhookJob.FromString(message.body)
            except Exception:  # noqa: BLE001 - any garbage
                logger.error("dropping an undecodable webhook job")
                await _settle(message.ack())
                return
            try:
                await self._deliver(job)
            except (StoreError, BrokerError) as exc:
                logger.warning("webhook of %s put back: %s", _subject(job), exc)
                await asyncio.sleep(STORE_RETRY_PAUSE_S)
                await _settle(message.nack(requeue=True))
                return
            await _settle(message.ack())
        except Exception:
            logger.exception("unexpected error delivering a webhook; requeueing it")
            await _settle(message.nack(requeue=True))
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _delivery(self, job: WebhookJob) -> Delivery | None:
        """What the job delivers; None when there is nothing (any more) to deliver."""
        if job.batch_id:
            ended = await self._batches.ended(job.batch_id)
            if ended is None:
                return None
            owner, url, batch = ended
            return Delivery(
                job.batch_id,
                owner,
                url,
                batch.model_dump_json().encode(),
                functools.partial(self._batches.update_webhook, job.batch_id),
            )
        record = await self.store.get(job.task_id)
        if record is None or not record.webhook_url or not record.status.is_final:
            return None
        if record.webhook_status in ("delivered", "failed"):
            return None  # a duplicate job (a redelivered task queued it again)
        return Delivery(
            job.task_id,
            record.owner,
            record.webhook_url,
            json.dumps(record.document().model_dump(mode="json")).encode(),
            functools.partial(self.store.update_webhook, job.task_id),
        )

    async def _deliver(self, job: WebhookJob) -> None:
        delivery = await self._delivery(job)
        if delivery is None:
            return
        attempt = max(1, job.attempt)
        signing_secrets = await self._users.webhook_secrets(
            delivery.owner, grace_s=self.settings.webhook_secret_grace_s
        )
        try:
            if not signing_secrets:
                raise PermanentFailure(f"the owner {delivery.owner!r} has no account")
            # The allow-list as it is now, one lookup, and the address connected to is the
            # one checked (a name that rebinds to an internal address reaches nothing).
            target = await resolve_target(delivery.url, self.settings.callback_hosts, self._resolve)
            async with self._turn(delivery.owner, target.host):
                await self._post(target, delivery.body, delivery.subject_id, signing_secrets)
        except LeaseRefused:
            # The owner's deliveries (or the host's) are at their limit: this one waits its
            # turn out of the way, so others' webhooks are not held up. Not an attempt.
            await self._defer(job)
            return
        except (PermanentFailure, CallbackRefused, CallbackInvalid) as exc:
            await self._record_failure(delivery, attempt, str(exc))
            return
        except (httpx.HTTPError, OSError) as exc:
            error = _describe(exc)
            if attempt >= self.settings.webhook_max_attempts:
                await self._record_failure(delivery, attempt, error)
                return
            await self._retry(job, error, delivery)
            return
        await delivery.record(status="delivered", attempts=attempt, error=None, delivered_at=now())
        self.metrics.inc(WEBHOOK_DELIVERIES, "ok")

    async def _post(
        self, target: Target, body: bytes, subject_id: str, signing_secrets: list[str]
    ) -> None:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Host": target.host_header,
            **signature_headers(subject_id, body, signing_secrets, int(time.time())),
        }
        # TLS still checks the certificate against the host's name (SNI).
        response = await self.http.post(
            target.pinned_url,
            content=body,
            headers=headers,
            timeout=self.settings.webhook_timeout_s,
            extensions={"sni_hostname": target.host},
        )
        if not 200 <= response.status_code < 300:
            raise httpx.HTTPStatusError(
                f"receiver answered {response.status_code}",
                request=response.request,
                response=response,
            )

    @contextlib.asynccontextmanager
    async def _turn(self, owner: str, host: str) -> AsyncIterator[None]:
        """Hold a lease on one of the owner's deliveries and one of the host's (over every
        dispatcher replica), waiting up to `TURN_WAIT_S` for them. A burst to a receiver that
        answers at once waits milliseconds here; past the wait, or with `TURN_QUEUE` jobs of
        the host already waiting in this process, `LeaseRefused` sends the job to the defer
        queue, so a slow receiver holds only its share of this dispatcher's prefetch."""
        waiting = self._waiting.get(host, 0)
        if waiting >= TURN_QUEUE:
            raise LeaseRefused(waiting, TURN_QUEUE)
        self._waiting[host] = waiting + 1
        try:
            leases = [
                (WEBHOOKS_IN_FLIGHT, owner, self.settings.quota_webhooks_in_flight),
                (WEBHOOKS_PER_HOST, host, self.settings.webhook_max_per_host),
            ]
            held: list[tuple[Any, str, str]] = []
            deadline = time.monotonic() + TURN_WAIT_S
            try:
                for kind, subject, limit in leases:
                    while True:
                        try:
                            member = await self._leases.take(kind, subject, default_limit=limit)
                            break
                        except LeaseRefused:
                            if time.monotonic() > deadline:
                                raise
                            await asyncio.sleep(TURN_LOOK_S)
                    held.append((kind, subject, member))
            except BaseException:
                for kind, subject, member in held:
                    await self._leases.give_back(kind, subject, member)
                raise
        finally:
            self._waiting[host] -= 1
        try:
            yield
        finally:
            for kind, subject, member in held:
                await self._leases.give_back(kind, subject, member)

    async def _defer(self, job: WebhookJob) -> None:
        if self._channel is None:
            raise BrokerError("no channel to publish a deferred delivery on")
        await publish_confirmed(
            self._channel,
            defer_queue(self.queue_name),
            persistent_message(
                job.SerializeToString(), message_id=_subject(job), expiration_s=DEFER_S
            ),
            timeout_s=self.settings.io_timeout_s,
        )
        self.metrics.inc(WEBHOOK_DELIVERIES, "deferred")

    async def _retry(self, job: WebhookJob, error: str, delivery: Delivery) -> None:
        if self._channel is None:
            raise BrokerError("no channel to publish a retry on")
        delay_s = self.settings.webhook_backoff_s * (2 ** (job.attempt - 1))
        retry = WebhookJob()
        retry.CopyFrom(job)
        retry.attempt = job.attempt + 1
        await publish_confirmed(
            self._channel,
            retry_queue(self.queue_name, job.attempt),
            persistent_message(
                retry.SerializeToString(), message_id=_subject(job), expiration_s=delay_s
            ),
            timeout_s=self.settings.io_timeout_s,
        )
        await delivery.record(attempts=job.attempt, error=error)
        self.metrics.inc(WEBHOOK_DELIVERIES, "retried")
        logger.info(
            "webhook of %s failed (%s); attempt %d in %.1fs",
            _subject(job),
            error,
            job.attempt + 1,
            delay_s,
        )

    async def _record_failure(self, delivery: Delivery, attempt: int, error: str) -> None:
        await delivery.record(status="failed", attempts=attempt, error=error)
        self.metrics.inc(WEBHOOK_DELIVERIES, "failed")
        logger.warning("webhook of %s failed for good: %s", delivery.subject_id, error)


def _subject(job: WebhookJob) -> str:
    """What a job delivers, for logs and message ids: `batch_…` or the task id."""
    return job.batch_id or job.task_id


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:MAX_ERROR_CHARS]


async def _settle(settlement: Any) -> None:
    try:
        await settlement
    except BROKER_ERRORS as exc:
        logger.warning("could not settle a webhook job: %s", exc)
