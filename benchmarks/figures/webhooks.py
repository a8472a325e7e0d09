"""Webhooks: every callback delivered, and how long after the task's final write."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from ray import serve

from benchmarks.harness import Context, Row, Series, deploy_model, pct, tail_name
from benchmarks.models import Noop
from benchmarks.receiver import Receiver

NOTES = [
    "Webhooks: tasks submitted in batches of 100, each with a callback to a receiver on "
    "loopback; the delay is from the task's `finished_at` to the receiver reading the "
    "delivery (signed, through the durable queue and the dispatcher).",
]


def run(ctx: Context) -> list[Row]:
    n = 300 if ctx.quick else 1000
    deploy_model(Noop, "bench-noop")
    p50, tail, delivered = Series(), Series(), Series()
    errors, samples = 0, 0
    for _ in range(ctx.runs):
        receiver = Receiver()
        try:
            with httpx.Client(base_url=ctx.base, timeout=60) as client:
                for start in range(0, n, 100):
                    response = client.post(
                        "/models/bench-noop/batches",
                        params={"callback_url": receiver.url},
                        json=[{"text": f"h{i}"} for i in range(start, min(n, start + 100))],
                        headers=ctx.headers,
                    )
                    if response.status_code != 202:
                        errors += 1
            deadline = time.monotonic() + 120
            while len(receiver.deliveries) < n and time.monotonic() < deadline:
                time.sleep(0.2)
            delays = [
                at - datetime.fromisoformat(doc["finished_at"]).timestamp()
                for at, doc in receiver.deliveries
            ]
        finally:
            receiver.close()
        errors += n - len({doc["task_id"] for _, doc in receiver.deliveries})
        delivered.add(len({doc["task_id"] for _, doc in receiver.deliveries}))
        samples = len(delays)
        p50.add(pct(delays, 0.5) * 1000)
        tail.add(pct(delays, 0.99) * 1000)
    serve.delete("bench-noop")
    return [
        Row(
            f"Webhooks, {n} tasks with callbacks: delivered; delay after the final write, "
            f"p50 [{tail_name(samples)}] (ms)",
            f"{delivered.fmt()} delivered; {p50.fmt()} [{tail.fmt()}]",
            errors=errors,
        )
    ]
