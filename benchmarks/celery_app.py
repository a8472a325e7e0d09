"""The plain Celery peer: one no-op task, RabbitMQ broker, Redis result backend."""

from __future__ import annotations

import os

from celery import Celery

BROKER = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
BACKEND = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
QUEUE = "bench-celery"

app = Celery("bench", broker=BROKER, backend=BACKEND)
app.conf.update(
    task_acks_late=True,  # the same guarantee as ours: ack after the result is stored
    task_reject_on_worker_lost=True,
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=1,
    result_extended=True,
)


@app.task(name="noop")
def noop(text: str) -> str:
    return text
