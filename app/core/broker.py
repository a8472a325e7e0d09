"""RabbitMQ: connections, the names of a model's queues, and the confirmed publisher.

Queues of model `m` (all durable, on the default exchange; declared by its replicas, see
`app.core.queues`):
    m            the work queue; a rejected message dead-letters to `m.dlq`
    m.dlq        tasks that failed for good and messages that could not be decoded
    m.retry.N    a waiting room for attempt N+1: messages sit there for their backoff, then
                 dead-letter back into `m` (no in-process sleep holds a prefetch slot)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractQueue,
    AbstractRobustConnection,
    DeliveryMode,
)
from aio_pika.exceptions import AMQPError, DeliveryError

logger = logging.getLogger(__name__)

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    AMQPError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
    # aio-pika/aiormq signal a connection or channel in the wrong state (e.g. "Connection was
    # not opened" while a robust connection reconnects) with RuntimeError subclasses; this
    # also covers our own BrokerError.
    RuntimeError,
)


# How long a queue length read from RabbitMQ is served again (routes and scrapes share it).
QUEUE_STATS_TTL_S = 1.0


class BrokerError(RuntimeError):
    """RabbitMQ could not be reached, or did not confirm a publish."""


class QueueMissing(BrokerError):
    """The broker returned a message because no queue of that name exists."""


@dataclass(frozen=True)
class QueueNames:
    work: str
    dead_letter: str

    @classmethod
    def for_model(cls, model: str) -> QueueNames:
        return cls(work=model, dead_letter=f"{model}.dlq")

    def retry(self, attempt: int) -> str:
        return f"{self.work}.retry.{attempt}"


async def connect(url: str, *, attempts: int, delay_s: float) -> AbstractRobustConnection:
    """Open a robust connection, trying `attempts` times before giving up.

    aio-pika's robust connection reconnects by itself once established, but its first
    connect fails at once when the broker is down; this covers the start-up race.

    Raises:
        BrokerError: every attempt failed.
    """
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return await aio_pika.connect_robust(url, timeout=10)
        except BROKER_ERRORS as exc:
            last = exc
            logger.warning("RabbitMQ connect attempt %d/%d failed: %s", attempt, attempts, exc)
            if attempt < attempts:
                await asyncio.sleep(delay_s * attempt)
    raise BrokerError(f"cannot connect to RabbitMQ after {attempts} attempts: {last}")


def persistent_message(
    body: bytes,
    *,
    message_id: str,
    expiration_s: float | None = None,
    priority: int | None = None,
) -> aio_pika.Message:
    return aio_pika.Message(
        body,
        delivery_mode=DeliveryMode.PERSISTENT,
        content_type="application/x-protobuf",
        message_id=message_id,
        expiration=expiration_s,
        priority=priority,
    )


async def publish_confirmed(
    channel: AbstractChannel,
    routing_key: str,
    message: aio_pika.Message,
    *,
    timeout_s: float,
) -> None:
    """Publish with `mandatory` set and wait for the broker's confirm.

    The channel must have publisher confirms on and `on_return_raises=True`, so a message
    no queue takes raises instead of vanishing.

    Raises:
        QueueMissing: no queue is bound to `routing_key`.
        BrokerError: the broker is unreachable, nacked, or did not confirm within `timeout_s`.
    """
    try:
        await channel.default_exchange.publish(
            message, routing_key=routing_key, mandatory=True, timeout=timeout_s
        )
    except DeliveryError as exc:
        frame = getattr(exc, "frame", None)
        if frame is not None and frame.__class__.__name__ == "Return":
            raise QueueMissing(f"no queue named {routing_key!r}") from exc
        raise BrokerError(f"publish to {routing_key!r} was not confirmed: {exc}") from exc
    except BROKER_ERRORS as exc:
        raise BrokerError(f"publish to {routing_key!r} failed: {exc!r}") from exc


class Publisher:
    """The gateway's side of RabbitMQ: one robust connection, one confirming channel."""

    def __init__(self, url: str, *, timeout_s: float, connect_attempts: int = 1) -> None:
        self._url = url
        self._timeout_s = timeout_s
        self._connect_attempts = connect_attempts
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None
        self._lock = asyncio.Lock()
        # Queue lengths: a channel and queue objects kept for looking, and the last answers.
        self._stats_channel: AbstractChannel | None = None
        self._stats_queues: dict[str, AbstractQueue] = {}
        self._stats_lock = asyncio.Lock()
        self._lengths: dict[str, tuple[float, int | None]] = {}

    async def _get_channel(self) -> AbstractChannel:
        if self._channel is not None and not self._channel.is_closed:
            return self._channel
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            if self._connection is None or self._connection.is_closed:
                self._connection = await asyncio.wait_for(
                    connect(self._url, attempts=self._connect_attempts, delay_s=0.5),
                    timeout=self._timeout_s,
                )
            self._channel = await self._connection.channel(
                publisher_confirms=True, on_return_raises=True
            )
            return self._channel

    async def publish(
        self, routing_key: str, body: bytes, *, message_id: str, priority: int | None = None
    ) -> None:
        """Publish a persistent message and return once RabbitMQ confirmed it.

        Raises:
            QueueMissing: no queue named `routing_key`.
            BrokerError: RabbitMQ is unreachable or did not confirm in time.
        """
        channel = self._channel
        if channel is None or channel.is_closed:  # the common case needs no timer
            try:
                async with asyncio.timeout(self._timeout_s):
                    channel = await self._get_channel()
            except BROKER_ERRORS as exc:
                raise BrokerError(f"RabbitMQ unavailable: {exc!r}") from exc
        await publish_confirmed(
            channel,
            routing_key,
            persistent_message(body, message_id=message_id, priority=priority),
            timeout_s=self._timeout_s,
        )

    async def declare(self, declare: Callable[[AbstractChannel], Awaitable[object]]) -> None:
        """Run `declare` (queue declarations) on a channel of this publisher's connection.

        Raises:
            BrokerError: RabbitMQ is unreachable or refused a declaration.
        """
        try:
            async with asyncio.timeout(self._timeout_s), self.fresh_channel() as channel:
                await declare(channel)
        except BROKER_ERRORS as exc:
            raise BrokerError(f"declaring queues failed: {exc!r}") from exc

    @contextlib.asynccontextmanager
    async def fresh_channel(self) -> AsyncIterator[AbstractChannel]:
        """A channel of its own (publisher confirms on), closed on exit: messages got on it
        and not acked go back to their queue.

        Raises:
            BrokerError: RabbitMQ is unreachable.
        """
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._get_channel()
                assert self._connection is not None  # noqa: S101 - set by _get_channel
                channel = await self._connection.channel(
                    publisher_confirms=True, on_return_raises=True
                )
        except BROKER_ERRORS as exc:
            raise BrokerError(f"RabbitMQ unavailable: {exc!r}") from exc
        try:
            yield channel
        finally:
            if not channel.is_closed:
                try:
                    await channel.close()
                except BROKER_ERRORS as exc:
                    logger.warning("closing a channel failed: %s", exc)

    async def queue_lengths(
        self, names: list[str], *, max_age_s: float = QUEUE_STATS_TTL_S
    ) -> dict[str, int | None]:
        """Messages ready in each named queue (None for a queue that does not exist).

        Answers up to `max_age_s` old are served again, so every route and scrape of that
        moment shares one look. Looks go through one channel kept for them, with the queue objects
        kept too (a passive re-declare refreshes a count); only a missing queue, whose passive
        declare closes the channel, costs a new channel.
        """
        now = time.monotonic()
        lengths: dict[str, int | None] = {}
        stale = []
        for name in names:
            cached = self._lengths.get(name)
            if cached is not None and now - cached[0] < max_age_s:
                lengths[name] = cached[1]
            else:
                stale.append(name)
        if stale:
            async with self._stats_lock:
                for name in stale:
                    lengths[name] = await self._queue_length(name)
                    self._lengths[name] = (time.monotonic(), lengths[name])
        return lengths

    async def _queue_length(self, name: str) -> int | None:
        try:
            queue = self._stats_queues.get(name)
            if queue is None:
                if self._stats_channel is None or self._stats_channel.is_closed:
                    await self._get_channel()
                    assert self._connection is not None  # noqa: S101 - set by _get_channel
                    self._stats_channel = await self._connection.channel(publisher_confirms=False)
                    self._stats_queues.clear()
                queue = await self._stats_channel.declare_queue(name, passive=True)
                self._stats_queues[name] = queue
            else:
                await queue.declare()
            return int(queue.declaration_result.message_count or 0)
        except AMQPError:
            # No such queue: the broker closed the channel; the next look opens another.
            self._stats_queues.clear()
            self._stats_channel = None
            return None
        except BROKER_ERRORS as exc:
            self._stats_queues.clear()
            self._stats_channel = None
            logger.warning("cannot read the length of queue %s: %s", name, exc)
            return None

    async def is_connected(self) -> bool:
        try:
            async with asyncio.timeout(self._timeout_s):
                channel = await self._get_channel()
        except BROKER_ERRORS:
            return False
        return not channel.is_closed

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
        self._connection = None
        self._channel = None
        self._stats_channel = None
        self._stats_queues.clear()
