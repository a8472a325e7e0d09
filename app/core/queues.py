"""Declaring a model's queues: only its replicas do (the gateway publishes to what exists)."""

from __future__ import annotations

from aio_pika.abc import AbstractChannel, AbstractQueue

from app.core.broker import QueueNames


async def declare_model_queues(
    channel: AbstractChannel, model: str, *, max_attempts: int
) -> AbstractQueue:
    """Declare the work, dead-letter and retry queues of `model`; return the work queue.

    The arguments here must never change for an existing queue (RabbitMQ refuses a redeclare
    with other arguments), so they hold only names, never tunable values.
    """
    names = QueueNames.for_model(model)
    await channel.declare_queue(names.dead_letter, durable=True)
    work = await channel.declare_queue(
        names.work,
        durable=True,
        arguments={
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": names.dead_letter,
        },
    )
    for attempt in range(1, max_attempts):
        await channel.declare_queue(
            names.retry(attempt),
            durable=True,
            arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": names.work},
        )
    return work
