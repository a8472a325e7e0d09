"""Batch submit: tasks accepted per second, 100 per request, against a plain endpoint."""

from __future__ import annotations

import asyncio

import httpx
from ray import serve

from benchmarks import peers
from benchmarks.harness import Context, Row, Series, deploy_model, ratio, verdict
from benchmarks.load import closed_loop
from benchmarks.models import Noop

PER_REQUEST = 100
CLIENTS = 8
NOTES = [
    f"Batch submit: {CLIENTS} clients post {PER_REQUEST} request messages per call in a closed "
    "loop while the model drains them; the peer is the plain endpoint's requests/s (32 "
    "clients), each of which carries one message.",
]


def run(ctx: Context) -> list[Row]:
    serve.run(peers.plain_serve_app(4096), name="plain", route_prefix="/plain")
    deploy_model(Noop, "bench-noop")
    body = [{"text": f"b{i}"} for i in range(PER_REQUEST)]

    async def batch(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/models/bench-noop/batches", json=body, headers=ctx.headers)

    async def plain(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/plain/noop", json={"text": "x"})

    ours, peer = Series(), Series()
    errors = 0
    for _ in range(ctx.runs):
        result = asyncio.run(
            closed_loop(ctx.base, batch, concurrency=CLIENTS, duration_s=ctx.seconds, expect=202)
        )
        ours.add(result.rate * PER_REQUEST)
        other = asyncio.run(
            closed_loop(ctx.base, plain, concurrency=32, duration_s=ctx.seconds, expect=200)
        )
        peer.add(other.rate)
        errors += result.errors + other.errors
    serve.delete("plain")
    serve.delete("bench-noop")
    r = ratio(ours, peer)
    return [
        Row(
            f"Batch submit, {PER_REQUEST} tasks per request (tasks accepted/s)",
            ours.fmt(),
            f"plain Ray Serve endpoint (req/s): {peer.fmt()}",
            f"{r:.2f}×",
            verdict(r, 5.0),
            errors,
        )
    ]
