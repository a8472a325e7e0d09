"""Thousands of idle waiters on one gateway replica: how fast they wake, what they cost, and
whether submits still flow beside them."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

import httpx
import psutil

from benchmarks.harness import (
    Context,
    Row,
    Series,
    deploy_model,
    pct,
    rss_mb,
    tail_name,
    verdict,
)
from benchmarks.load import closed_loop
from deployments.echo import Echo

NOTES = [
    "Waiters: long-poll and SSE clients wait on tasks that finish over time, all on one "
    "gateway replica; the wake-up lag is from the task's final write (its `finished_at`) to "
    "the waiter receiving the answer. Submits run in a closed loop of 8 clients, first with "
    "no waiter, then while the waiters are held. Memory is the gateway replica's RSS with "
    "the waiters held, minus at rest, per 1,000 waiters (the Serve proxy's growth is noted).",
]
SUBMITTERS = 8
# When the first task the waiters wait on completes (the waiters all arrive before).
FIRST_DONE_S = 45


def _finished_at(document: dict) -> float:
    return datetime.fromisoformat(document["finished_at"]).timestamp()


async def _long_poll(client: httpx.AsyncClient, headers, task_id: str, lags, failures) -> None:
    response = await client.get(
        "/models/bench-wait/result", params={"task_id": task_id, "wait": 60}, headers=headers
    )
    received = time.time()
    if response.status_code != 200:
        failures.append(response.status_code)
        return
    lags.append(received - _finished_at(response.json()))


async def _stream(client: httpx.AsyncClient, headers, task_id: str, lags, failures) -> None:
    async with client.stream(
        "GET", f"/models/bench-wait/tasks/{task_id}/events", headers=headers
    ) as response:
        if response.status_code != 200:
            failures.append(response.status_code)
            return
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                document = json.loads(line[5:])
                if document["status"] in ("succeeded", "failed"):
                    lags.append(time.time() - _finished_at(document))
                    return
    failures.append(0)


async def _waiting(base: str, headers: dict[str, str]) -> float:
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


async def one_run(ctx: Context, pollers: int, streams: int, tasks: int) -> dict:
    headers = ctx.headers
    limits = httpx.Limits(max_connections=pollers + streams + 100, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=ctx.base, timeout=120, limits=limits) as client:
        # Tasks that finish one after another, FIRST_DONE_S to FIRST_DONE_S + 15 s from now:
        # the waiters arrive first, are held idle, then are woken while tasks complete.
        started = time.monotonic()
        bodies = [
            {"text": f"w{i}", "delay_ms": FIRST_DONE_S * 1000 + i * 15_000 // tasks}
            for i in range(tasks)
        ]
        accepted = await client.post("/models/bench-wait/batches", json=bodies, headers=headers)
        task_ids = accepted.json()["task_ids"]
        at_rest = rss_mb("ServeReplica:gateway:gateway")
        proxy_rest = rss_mb("ProxyActor")
        lags: list[float] = []
        failures: list[int] = []
        waiters = [
            asyncio.create_task(_long_poll(client, headers, task_ids[i % tasks], lags, failures))
            for i in range(pollers)
        ] + [
            asyncio.create_task(_stream(client, headers, task_ids[i % tasks], lags, failures))
            for i in range(streams)
        ]
        while await _waiting(ctx.base, headers) < pollers + streams:
            if time.monotonic() - started > FIRST_DONE_S - 12:
                break
            await asyncio.sleep(0.5)
        held = await _waiting(ctx.base, headers)
        held_rss = rss_mb("ServeReplica:gateway:gateway")
        proxy_held = rss_mb("ProxyActor")
        cpu_before = _cpu_seconds("ServeReplica:gateway:gateway")
        await asyncio.sleep(2)
        idle_cpu = (_cpu_seconds("ServeReplica:gateway:gateway") - cpu_before) / 2

        async def submit(c: httpx.AsyncClient) -> httpx.Response:
            return await c.post("/models/bench-noop/tasks", json={"text": "s"}, headers=headers)

        seconds = min(ctx.seconds, 6)
        while_held = await closed_loop(
            ctx.base, submit, concurrency=SUBMITTERS, duration_s=seconds, expect=202
        )
        await asyncio.sleep(max(0.0, FIRST_DONE_S + 1 - (time.monotonic() - started)))
        while_waking = await closed_loop(
            ctx.base, submit, concurrency=SUBMITTERS, duration_s=seconds, expect=202
        )
        await asyncio.gather(*waiters)
    return {
        "held": held,
        "idle_cpu": idle_cpu,
        "lags": lags,
        "failures": failures,
        "held_submits": while_held,
        "waking_submits": while_waking,
        "per_1000_mb": (held_rss - at_rest) * 1000 / max(1.0, held),
        "proxy_per_1000_mb": (proxy_held - proxy_rest) * 1000 / max(1.0, held),
    }


def run(ctx: Context) -> list[Row]:
    from benchmarks.models import Noop

    pollers, streams, tasks = (400, 100, 20) if ctx.quick else (2000, 500, 100)
    deploy_model(Echo, "bench-wait", overrides={"max_concurrency": tasks + 10})
    deploy_model(Noop, "bench-noop")
    headers = ctx.headers

    async def submit(c: httpx.AsyncClient) -> httpx.Response:
        return await c.post("/models/bench-noop/tasks", json={"text": "s"}, headers=headers)

    quiet50, quiet99 = Series(), Series()
    held50, held99, waking50, waking99 = Series(), Series(), Series(), Series()
    lag50, lag_tail, memory, proxy_memory, held = Series(), Series(), Series(), Series(), Series()
    idle_cpu = Series()
    errors, refused, samples = 0, 0, 0
    for _ in range(ctx.runs):
        quiet = asyncio.run(
            closed_loop(ctx.base, submit, concurrency=SUBMITTERS, duration_s=6, expect=202)
        )
        quiet50.add(quiet.percentile(0.5) * 1000)
        quiet99.add(quiet.percentile(0.99) * 1000)
        result = asyncio.run(one_run(ctx, pollers, streams, tasks))
        for phase, p50, p99 in (
            ("held_submits", held50, held99),
            ("waking_submits", waking50, waking99),
        ):
            during = result[phase]
            p50.add(during.percentile(0.5) * 1000)
            p99.add(during.percentile(0.99) * 1000)
            refused += during.statuses.get(503, 0)
            errors += during.errors
        errors += quiet.errors + len(result["failures"])
        refused += sum(1 for status in result["failures"] if status == 503)
        lags = result["lags"]
        samples = len(lags)
        lag50.add(pct(lags, 0.5) * 1000)
        lag_tail.add(pct(lags, 0.99) * 1000)
        memory.add(result["per_1000_mb"])
        proxy_memory.add(result["proxy_per_1000_mb"])
        held.add(result["held"])
        idle_cpu.add(result["idle_cpu"] * 100)
    ctx.notes.append(
        f"Waiters: {held.fmt()} waiters were held at once per run; while they were held and "
        f"idle the gateway replica used {idle_cpu.fmt()} % of a core; the Serve proxy grew by "
        f"{proxy_memory.fmt(1)} MB per 1,000 of them."
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
        rows.append(
            Row(
                f"Submit {label}: p50 / p99 (ms)",
                f"{p50.fmt(1)} / {p99.fmt(1)}",
                f"no waiters: {quiet50.fmt(1)} / {quiet99.fmt(1)}",
                f"{r50:.2f}× / {r99:.2f}×",
                f"{verdict(max(r50, r99), 1.5, at_least=False)}; 503s: {refused}",
            )
        )
    rows.append(Row("Gateway replica RSS per 1,000 waiters (MB)", memory.fmt(1)))
    return rows
