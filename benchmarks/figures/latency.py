"""Submit → result visible at a fixed rate, idle and under load, against Serve's two hops."""

from __future__ import annotations

import asyncio
import time

import httpx
from ray import serve

from benchmarks import peers
from benchmarks.harness import (
    Context,
    PeakRss,
    Row,
    Series,
    deploy_model,
    pct,
    tail_name,
    token,
    verdict,
)
from benchmarks.models import Noop

RATE = 10.0
NOTES = [
    "Submit → result: each probe submits and long-polls its result; the peer is one plain "
    "request through the same ingress to a FastAPI deployment that calls a second one by "
    "handle and answers (Serve's own two hops, no queue). Under load, another user keeps "
    "8 closed-loop submitters going on the same model.",
]


async def probes(
    base: str,
    headers: dict[str, str],
    path_for,
    seconds: float,
    background: int,
    background_headers: dict[str, str] | None = None,
):
    """Latencies of requests sent at RATE/s, with `background` closed-loop submitters (another
    user's, as on a shared platform: fair share keeps the probes out of their backlog)."""
    latencies: list[float] = []
    errors = 0
    stop = asyncio.Event()
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=200)
    ) as client:

        async def one() -> None:
            nonlocal errors
            started = time.perf_counter()
            ok = await path_for(client)
            if ok:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1

        async def load() -> None:
            while not stop.is_set():
                await client.post(
                    "/models/bench-noop/tasks",
                    json={"text": "bg"},
                    headers=background_headers or headers,
                )

        busy = [asyncio.create_task(load()) for _ in range(background)]
        sent = []
        for _ in range(int(RATE * seconds)):
            sent.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / RATE)
        await asyncio.gather(*sent)
        stop.set()
        await asyncio.gather(*busy)
    return latencies, errors


def run(ctx: Context) -> list[Row]:
    deploy_model(Noop, "bench-noop")
    serve.run(peers.plain_two_hop_app(), name="plain-two-hop", route_prefix="/two-hop")
    headers = ctx.headers

    async def ours(client: httpx.AsyncClient) -> bool:
        accepted = await client.post(
            "/models/bench-noop/tasks", json={"text": "t"}, headers=headers
        )
        if accepted.status_code != 202:
            return False
        task_id = accepted.json()["task_id"]
        result = await client.get(
            "/models/bench-noop/result", params={"task_id": task_id, "wait": 10}, headers=headers
        )
        return result.status_code == 200 and result.json()["status"] == "succeeded"

    async def plain(client: httpx.AsyncClient) -> bool:
        response = await client.post("/two-hop/echo", json={"text": "t"})
        return response.status_code == 200

    rows = []
    p50, tail, peer50 = Series(), Series(), Series()
    errors = 0
    samples = 0
    for _ in range(ctx.runs):
        latencies, failed = asyncio.run(probes(ctx.base, headers, ours, ctx.seconds, 0))
        peer, peer_failed = asyncio.run(probes(ctx.base, headers, plain, ctx.seconds, 0))
        errors += failed + peer_failed
        samples = len(latencies)
        p50.add(pct(latencies, 0.5) * 1000)
        tail.add(pct(latencies, 0.99) * 1000)
        peer50.add(pct(peer, 0.5) * 1000)
    r = p50.median / peer50.median
    rows.append(
        Row(
            f"Submit → result visible, {RATE:.0f} req/s, idle: p50 (ms) [{tail_name(samples)} "
            f"{tail.fmt()}]",
            p50.fmt(),
            f"plain Serve two-hop request p50: {peer50.fmt(1)}",
            f"{r:.2f}×",
            verdict(r, 1.2, at_least=False),
            errors,
        )
    )
    loaded50, loaded_tail, memory = Series(), Series(), Series()
    errors = 0
    others = token(ctx.base)
    for _ in range(ctx.runs):
        with PeakRss("ServeReplica:bench-noop") as peak:
            latencies, failed = asyncio.run(
                probes(ctx.base, headers, ours, ctx.seconds, 8, background_headers=others)
            )
        memory.add(peak.peak)
        errors += failed
        samples = len(latencies)
        if latencies:  # every probe failing is reported in `errors`, not as a crash
            loaded50.add(pct(latencies, 0.5) * 1000)
            loaded_tail.add(pct(latencies, 0.99) * 1000)
    rows.append(
        Row(
            f"Submit → result visible, {RATE:.0f} req/s, under load (8 closed-loop submitters): "
            f"p50 (ms) [{tail_name(samples)} {loaded_tail.fmt()}]",
            loaded50.fmt(),
            errors=errors,
        )
    )
    ctx.memory["model replica under load"] = memory
    serve.delete("plain-two-hop")
    serve.delete("bench-noop")
    return rows
