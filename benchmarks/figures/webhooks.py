"""Webhooks: how long after a task's final write its callback arrives, one by one and in a
burst; and that every callback arrives."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from ray import serve

from benchmarks.harness import Context, Row, Series, deploy_model, pct, tail_name
from benchmarks.models import Noop
from benchmarks.receiver import Receiver

RATE = 20.0
NOTES = [
    f"Webhooks: the delay is from a task's `finished_at` to the receiver (on loopback, "
    f"answering at once) reading its delivery, signed, through the durable queue and the "
    f"dispatcher. One by one: tasks submitted at {RATE:.0f}/s. Burst: batches of 100 "
    "submitted back to back, every delivery to the same receiver (whose host may have 4 "
    "under way at once, APP_WEBHOOK_MAX_PER_HOST).",
]


def _delays(receiver: Receiver) -> list[float]:
    return [
        at - datetime.fromisoformat(doc["finished_at"]).timestamp()
        for at, doc in receiver.deliveries
    ]


def _wait_for(receiver: Receiver, n: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while len(receiver.deliveries) < n and time.monotonic() < deadline:
        time.sleep(0.1)


def run(ctx: Context) -> list[Row]:
    single_n = 60 if ctx.quick else 200
    burst_n = 300 if ctx.quick else 1000
    deploy_model(Noop, "bench-noop")
    one50, one_tail, burst50, burst_tail, delivered = (Series() for _ in range(5))
    errors = samples = 0
    with httpx.Client(base_url=ctx.base, timeout=60) as client:
        for _ in range(ctx.runs):
            receiver = Receiver()
            try:
                for i in range(single_n):
                    answer = client.post(
                        "/models/bench-noop/tasks",
                        params={"callback_url": receiver.url},
                        json={"text": f"one{i}"},
                        headers=ctx.headers,
                    )
                    errors += answer.status_code != 202
                    time.sleep(1 / RATE)
                _wait_for(receiver, single_n)
                delays = _delays(receiver)
                errors += single_n - len(receiver.deliveries)
                samples = len(delays)
                one50.add(pct(delays, 0.5) * 1000)
                one_tail.add(pct(delays, 0.99) * 1000)
            finally:
                receiver.close()
            receiver = Receiver()
            try:
                for start in range(0, burst_n, 100):
                    answer = client.post(
                        "/models/bench-noop/batches",
                        params={"callback_url": receiver.url},
                        json=[{"text": f"h{i}"} for i in range(start, min(burst_n, start + 100))],
                        headers=ctx.headers,
                    )
                    errors += answer.status_code != 202
                _wait_for(receiver, burst_n)
                arrived = {doc["task_id"] for _, doc in receiver.deliveries}
                errors += burst_n - len(arrived)
                delivered.add(len(arrived))
                delays = _delays(receiver)
                burst50.add(pct(delays, 0.5) * 1000)
                burst_tail.add(pct(delays, 0.99) * 1000)
            finally:
                receiver.close()
    serve.delete("bench-noop")
    met = one50.median <= 100
    return [
        Row(
            f"Webhook delay after the final write, one by one at {RATE:.0f}/s: p50 "
            f"[{tail_name(samples)}] (ms)",
            f"{one50.fmt()} [{one_tail.fmt()}]",
            goal=f"p50 ≤ 100 ms: {'met' if met else 'not met'}",
            errors=errors,
        ),
        Row(
            f"Webhooks, a burst of {burst_n} tasks with callbacks: delivered; delay p50 [p99] (ms)",
            f"{delivered.fmt()} delivered; {burst50.fmt()} [{burst_tail.fmt()}]",
        ),
    ]
