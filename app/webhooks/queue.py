"""The durable webhook queue: everyone who publishes deliveries to it declares it alike."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractQueue


def retry_queue(queue: str, attempt: int) -> str:
    return f"{queue}.retry.{attempt}"


def defer_queue(queue: str) -> str:
    """Where a delivery waits (its message's expiration) while its owner's or its receiving
    host's deliveries are at their limit, then dead-letters back."""
    return f"{queue}.defer"


async def declare_webhook_queues(
    channel: AbstractChannel, queue: str, *, max_attempts: int
) -> AbstractQueue:
    """The delivery queue and its per-attempt waiting rooms (a delivery to retry sits in
    `<queue>.retry.N` for its backoff, then dead-letters back). Declared the same way by
    everyone who publishes to it, so whichever starts first creates it."""
    main = await channel.declare_queue(queue, durable=True)
    await channel.declare_queue(
        defer_queue(queue),
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue},
    )
    for attempt in range(1, max_attempts):
        await channel.declare_queue(
            retry_queue(queue, attempt),
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue},
        )
    return main
