"""Submit path: tasks accepted per second against a plain Ray Serve endpoint."""

from __future__ import annotations

import asyncio

import httpx
from ray import serve

from benchmarks import peers
from benchmarks.harness import Context, PeakRss, Row, Series, deploy_model, ratio, verdict
from benchmarks.load import closed_loop
from benchmarks.models import Noop

CONCURRENCY = 32
NOTES = [
    "Submit path: both sides go through Ray Serve's HTTP proxy, which costs about as much CPU "
    "per request as the endpoint itself; ours also writes Redis, publishes with a confirm and "
    "runs the consuming replica on the same 2 cores.",
]


def rate(base: str, headers: dict[str, str], path: str, seconds: float, expect: int):
    body = {"text": "hello"}

    async def request(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(path, json=body, headers=headers)

    return asyncio.run(
        closed_loop(base, request, concurrency=CONCURRENCY, duration_s=seconds, expect=expect)
    )


def run(ctx: Context) -> list[Row]:
    serve.run(peers.plain_serve_app(4096), name="plain", route_prefix="/plain")
    deploy_model(Noop, "bench-noop")
    ours, plain, memory = Series(), Series(), Series()
    errors = 0
    for _ in range(ctx.runs):
        with PeakRss("ServeReplica:gateway:gateway") as peak:
            result = rate(ctx.base, ctx.headers, "/models/bench-noop/tasks", ctx.seconds, 202)
        memory.add(peak.peak)
        ours.add(result.rate)
        errors += result.errors
        peer = rate(ctx.base, {}, "/plain/noop", ctx.seconds, 200)
        plain.add(peer.rate)
        errors += peer.errors
    serve.delete("plain")
    serve.delete("bench-noop")
    r = ratio(ours, plain)
    ctx.memory["gateway under submit load"] = memory
    return [
        Row(
            f"Submit path (req/s, {CONCURRENCY} clients)",
            ours.fmt(),
            f"plain Ray Serve endpoint: {plain.fmt()}",
            f"{r:.2f}×",
            verdict(r, 0.7),
            errors,
        )
    ]
