"""Drain rate of one replica on a pre-filled queue, against Celery and Ray's async inference."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ray import serve

from benchmarks import peers
from benchmarks.harness import (
    AMQP_URL,
    REDIS_URL,
    Context,
    PeakRss,
    Row,
    Series,
    deploy_model,
    ratio,
    verdict,
)
from benchmarks.models import Busy, Noop

NOTES = [
    "Drain: every consumer starts on a pre-filled queue; the rate is over the span of "
    "completion times (start-up excluded). Ours does two Redis writes per task (running, "
    "result) where the floor does one, and acks only after the result is stored, as do the "
    "Celery peers (acks_late). A task counts only if it succeeded.",
    "CPU scale-out: the 20 ms tasks keep a core busy; 2 replicas on 2 cores share them with "
    "Redis, RabbitMQ and Ray.",
]


async def prefill(name: str, n: int, payloads: list[bytes] | None = None) -> list[str]:
    """Queue `n` tasks for model `name` (each with its payload; default an echo message)."""
    import aio_pika

    from app.core.broker import persistent_message, publish_confirmed
    from app.core.envelope import created_at, new_envelope
    from app.core.queues import declare_model_queues
    from app.core.settings import get_settings
    from app.tasks.shapes import PendingTask
    from app.tasks.store import ResultStore
    from protos.echo_pb2 import EchoRequest

    settings = get_settings()
    store = ResultStore.from_url(REDIS_URL, prefix=settings.redis_prefix, ttl_s=3600, timeout_s=5)
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    await channel.queue_delete(name)
    await declare_model_queues(channel, name, max_attempts=3)
    payloads = payloads or [EchoRequest(text="x").SerializeToString()] * n
    envelopes = [new_envelope(model=name, owner="bench", payload=p) for p in payloads[:n]]
    for start in range(0, n, 500):
        chunk = envelopes[start : start + 500]
        await store.create_pending(
            [
                PendingTask(task_id=e.task_id, model=name, owner="bench", created_at=created_at(e))
                for e in chunk
            ]
        )
        await asyncio.gather(
            *(
                publish_confirmed(
                    channel,
                    name,
                    persistent_message(e.SerializeToString(), message_id=e.task_id),
                    timeout_s=30,
                )
                for e in chunk
            )
        )
    await connection.close()
    await store.close()
    return [e.task_id for e in envelopes]


async def finished(ids: list[str], timeout_s: float = 300) -> tuple[list[float], int]:
    """Finish times of the tasks that succeeded, and how many did not."""
    spans, failed = await run_spans(ids, timeout_s)
    return [end for _start, end in spans], failed


async def run_spans(
    ids: list[str], timeout_s: float = 300
) -> tuple[list[tuple[float, float]], int]:
    """(started, finished) times of the tasks that succeeded, and how many did not."""
    from redis.asyncio import Redis

    from app.core.settings import get_settings

    prefix = get_settings().redis_prefix
    redis = Redis.from_url(REDIS_URL)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            async with redis.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hmget(f"{prefix}:task:{task_id}", "status", "started_at", "finished_at")
                rows = await pipe.execute()
            if all(status in (b"succeeded", b"failed") for status, _, _ in rows):
                ok = [(float(a), float(b)) for status, a, b in rows if status == b"succeeded"]
                return ok, len(rows) - len(ok)
            if time.monotonic() > deadline:
                raise TimeoutError("tasks did not finish")
            await asyncio.sleep(0.5)
    finally:
        await redis.aclose()


def drain(cls: type, name: str, n: int, replicas: int = 1) -> tuple[float, float, int]:
    """Pre-fill, then start the model: (tasks/s over the completion span, span, failures)."""
    result = drain_tasks(cls, name, n, replicas=replicas)
    return result.rate, result.span, result.failed


@dataclass
class Drained:
    """What one drain measured: (started, finished) per succeeded task, failures, peak RSS."""

    spans: list[tuple[float, float]]
    failed: int
    peak_rss_mb: float = 0.0

    @property
    def span(self) -> float:
        ends = [end for _start, end in self.spans]
        return max(ends) - min(ends)

    @property
    def rate(self) -> float:
        return (len(self.spans) - 1) / self.span

    def run_times(self) -> list[float]:
        """Seconds each task spent from a replica taking it to its result being stored."""
        return [end - start for start, end in self.spans]


def drain_tasks(
    cls: type,
    name: str,
    n: int,
    *,
    replicas: int = 1,
    payloads: list[bytes] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Drained:
    """Pre-fill the queue, then start the model and wait for every task; the model's
    replicas' peak RSS is sampled meanwhile."""
    if name in serve.status().applications:
        serve.delete(name)
    ids = asyncio.run(prefill(name, n, payloads))
    with PeakRss(f"ServeReplica:{name}") as peak:
        deploy_model(cls, name, replicas, overrides=overrides, fresh=False)
        spans, failed = asyncio.run(run_spans(ids))
    serve.delete(name)
    return Drained(spans, failed, peak.peak)


def run(ctx: Context) -> list[Row]:
    n = 1000 if ctx.quick else 3000
    ours, floor, celery, ray_tc = Series(), Series(), Series(), Series()
    errors = peer_errors = 0
    for _ in range(ctx.runs):
        rate, _span, failed = drain(Noop, "bench-noop-drain", n)
        ours.add(rate)
        errors += failed
        floor.add(asyncio.run(peers.bare_floor(n)))
        rate, failed = peers.celery_worker(n)
        celery.add(rate)
        peer_errors += failed
        try:
            rate, failed = peers.ray_task_consumer(n)
            ray_tc.add(rate)
            peer_errors += failed
        except Exception as exc:  # report, do not hide
            ctx.notes.append(f"Ray Serve task_consumer run failed: {exc!r}")
            peer_errors += n
    rows = [
        Row(
            f"Drain rate, 1 replica, {n} no-op tasks (tasks/s)",
            ours.fmt(),
            f"Ray Serve task_consumer (Celery adapter): {ray_tc.fmt()}",
            f"{ratio(ours, ray_tc):.2f}×",
            errors=errors,
        ),
        Row(
            "Drain rate (same runs)",
            ours.fmt(),
            f"plain Celery worker, threads×16: {celery.fmt()}",
            f"{ratio(ours, celery):.2f}×",
            errors=peer_errors,
        ),
        Row(
            "Drain rate (same runs)",
            ours.fmt(),
            f"bare aio-pika → Redis (floor): {floor.fmt()}",
            f"{ratio(ours, floor):.2f}×",
            verdict(ratio(ours, floor), 0.7),
        ),
    ]
    n_cpu = 400 if ctx.quick else 2000
    spans = {1: Series(), 2: Series()}
    cpu_errors = 0
    for replicas in (1, 2):
        for _ in range(ctx.runs):
            _rate, span, failed = drain(Busy, "bench-cpu", n_cpu, replicas)
            spans[replicas].add(span)
            cpu_errors += failed
    rows.append(
        Row(
            f"Drain {n_cpu} × 20 ms CPU tasks (s), 2 replicas",
            spans[2].fmt(1),
            f"1 replica: {spans[1].fmt(1)}",
            f"{spans[1].median / spans[2].median:.2f}× faster",
            errors=cpu_errors,
        )
    )
    return rows
