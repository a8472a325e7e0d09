"""Thousands of idle waiters on one gateway replica: how fast they wake, what they cost, and
whether submits still flow beside them."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from benchmarks import wrk
from benchmarks.harness import (
    ROOT,
    Context,
    Row,
    Series,
    deploy_model,
    pct,
    rss_mb,
    tail_name,
)
from deployments.echo import Echo

NOTES = [
    "Waiters: long-poll and SSE clients (a process of their own) wait on tasks that finish "
    "over time, all on one gateway replica; the wake-up lag is from the task's final write "
    "(its `finished_at`) to the waiter receiving the answer. Submits are read by wrk (8 "
    "connections) with no waiter, while the waiters are held, and while they are answered. "
    "Memory is the gateway replica's RSS with the waiters held, minus at rest, per 1,000.",
]
SUBMITTERS = 8
# When the first task the waiters wait on completes (the waiters all arrive before).
FIRST_DONE_S = 45


async def _waiting(base: str) -> float:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        await client.get("/metrics")  # this replica's gauges go to the registry first
        text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(("app_long_poll_waiters ", "app_event_streams ")):
            total += float(line.split()[1])
    return total


def _cpu_seconds(title_part: str) -> float:
    total = 0.0
    for process in psutil.process_iter(["cmdline"]):
        if title_part in " ".join(process.info["cmdline"] or []):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _submits(ctx: Context, seconds: float) -> wrk.WrkResult:
    return wrk.run(
        f"{ctx.base}/models/bench-noop/tasks",
        method="POST",
        body=json.dumps({"text": "s"}),
        headers={**ctx.headers, "Content-Type": "application/json"},
        expect=202,
        connections=SUBMITTERS,
        seconds=seconds,
    )


def one_run(ctx: Context, pollers: int, streams: int, tasks: int) -> dict:
    started = time.monotonic()
    # Tasks that finish one after another, FIRST_DONE_S to FIRST_DONE_S + 15 s from now: the
    # waiters arrive first, are held idle, then are woken while tasks complete.
    bodies = [
        {"text": f"w{i}", "delay_ms": FIRST_DONE_S * 1000 + i * 15_000 // tasks}
        for i in range(tasks)
    ]
    accepted = httpx.post(
        f"{ctx.base}/models/bench-wait/batches", json=bodies, headers=ctx.headers, timeout=60
    )
    task_ids = accepted.json()["task_ids"]
    at_rest = rss_mb("ServeReplica:gateway:gateway")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as ids:
        json.dump(task_ids, ids)
    client = subprocess.Popen(  # noqa: S603 - this interpreter, the waiter module
        [
            sys.executable,
            "-m",
            "benchmarks.waiter_client",
            ctx.base,
            ctx.headers["Authorization"],
            "bench-wait",
            ids.name,
            str(pollers),
            str(streams),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    while client.stdout is not None and client.stdout.readline().strip() != "WAITERS_READY":
        pass
    while asyncio.run(_waiting(ctx.base)) < pollers + streams:
        if time.monotonic() - started > FIRST_DONE_S - 12:
            break
        time.sleep(0.5)
    held = asyncio.run(_waiting(ctx.base))
    held_rss = rss_mb("ServeReplica:gateway:gateway")
    cpu_before = _cpu_seconds("ServeReplica:gateway:gateway")
    time.sleep(2)
    idle_cpu = (_cpu_seconds("ServeReplica:gateway:gateway") - cpu_before) / 2
    seconds = min(ctx.seconds, 6)
    while_held = _submits(ctx, seconds)
    time.sleep(max(0.0, FIRST_DONE_S + 1 - (time.monotonic() - started)))
    while_waking = _submits(ctx, seconds)
    out, _ = client.communicate(timeout=300)
    Path(ids.name).unlink(missing_ok=True)
    line = next(x for x in out.splitlines() if x.startswith("WAITERS_JSON "))
    answered = json.loads(line.split(" ", 1)[1])
    return {
        "held": held,
        "idle_cpu": idle_cpu,
        "lags": answered["lags"],
        "failures": answered["failures"],
        "held_submits": while_held,
        "waking_submits": while_waking,
        "per_1000_mb": (held_rss - at_rest) * 1000 / max(1.0, held),
    }


def run(ctx: Context) -> list[Row]:
    from benchmarks.models import Noop

    pollers, streams, tasks = (400, 100, 20) if ctx.quick else (2000, 500, 100)
    deploy_model(Echo, "bench-wait", overrides={"max_concurrency": tasks + 10})
    deploy_model(Noop, "bench-noop")
    quiet50, quiet99 = Series(), Series()
    held50, held99, waking50, waking99 = Series(), Series(), Series(), Series()
    lag50, lag_tail, memory, held = Series(), Series(), Series(), Series()
    idle_cpu = Series()
    errors, refused, samples = 0, 0, 0
    for _ in range(ctx.runs):
        quiet = _submits(ctx, 6)
        quiet50.add(quiet.p50_ms)
        quiet99.add(quiet.p99_ms)
        errors += quiet.errors
        result = one_run(ctx, pollers, streams, tasks)
        for phase, p50, p99 in (
            ("held_submits", held50, held99),
            ("waking_submits", waking50, waking99),
        ):
            during = result[phase]
            p50.add(during.p50_ms)
            p99.add(during.p99_ms)
            errors += during.errors
        errors += len(result["failures"])
        refused += sum(1 for status in result["failures"] if status == 503)
        lags = result["lags"]
        samples = len(lags)
        lag50.add(pct(lags, 0.5) * 1000)
        lag_tail.add(pct(lags, 0.99) * 1000)
        memory.add(result["per_1000_mb"])
        held.add(result["held"])
        idle_cpu.add(result["idle_cpu"] * 100)
    ctx.notes.append(
        f"Waiters: {held.fmt()} waiters were held at once per run; while they were held and "
        f"idle the gateway replica used {idle_cpu.fmt()} % of a core."
    )
    rows = [
        Row(
            f"{pollers:,} long-poll + {streams} SSE waiters on one gateway replica: final write "
            f"→ waiter answered, p50 [{tail_name(samples)}] (ms)",
            f"{lag50.fmt()} [{lag_tail.fmt()}]",
            errors=errors,
        )
    ]
    for label, p50, p99 in (
        ("while the waiters are held", held50, held99),
        ("while the waiters are being answered", waking50, waking99),
    ):
        r50, r99 = p50.median / quiet50.median, p99.median / quiet99.median
        met = r50 <= 1.5 and r99 <= 2.0
        rows.append(
            Row(
                f"Submit {label}: p50 / p99 (ms, wrk {SUBMITTERS} connections)",
                f"{p50.fmt(1)} / {p99.fmt(1)}",
                f"no waiters: {quiet50.fmt(1)} / {quiet99.fmt(1)}",
                f"{r50:.2f}× / {r99:.2f}×",
                f"≤ 1.5× / ≤ 2×: {'met' if met else 'not met'}; 503s: {refused}",
            )
        )
    rows.append(Row("Gateway replica RSS per 1,000 waiters (MB)", memory.fmt(1)))
    return rows
