"""Submit path: tasks accepted per second, with wrk, against the peers that bound it.

In the same run: a bare uvicorn app doing a submit's own work without Ray (the floor), a
plain Ray Serve no-op endpoint behind the same HAProxy ingress, and, in a Ray instance of its
own, the same two behind Serve's Python proxy (the ingress the platform used before). The
model draining the queue runs throughout, for ours and the floor alike.
"""

from __future__ import annotations

import json
import statistics

from ray import serve

from benchmarks import peers, wrk
from benchmarks.harness import Context, PeakRss, Row, Series, deploy_model, ratio, verdict
from benchmarks.models import Noop

CONNECTIONS = 32
NOTES = [
    "Submit path: wrk (1 thread, 32 connections, C) posts one small JSON task body again and "
    "again; ours is the platform of scripts/start.sh (HAProxy ingress). The floor is a bare "
    "uvicorn + FastAPI app without Ray doing a submit's own work (HS256 check, one Redis "
    "write, one persistent publish with confirm) into the same queue, which the same model "
    "drains meanwhile. The Python-proxy rows run in a Ray instance of their own.",
    "The client is not the bottleneck: wrk with two threads and twice the connections reads "
    "the submit rate within the run-to-run spread (the row says by how much).",
]


def run(ctx: Context) -> list[Row]:
    serve.run(peers.plain_serve_app(4096), name="plain", route_prefix="/plain")
    deploy_model(Noop, "bench-noop")
    floor_app = peers.FloorApp("bench-noop")
    body = json.dumps({"text": "hello"})
    headers = {**ctx.headers, "Content-Type": "application/json"}
    ours, doubled, floor, plain, memory = Series(), Series(), Series(), Series(), Series()
    errors = 0

    def load(url, expect, hdrs, **options):
        nonlocal errors
        result = wrk.run(
            url,
            method="POST",
            body=body,
            headers=hdrs,
            expect=expect,
            seconds=ctx.seconds,
            **{"connections": CONNECTIONS, **options},
        )
        errors += result.errors
        return result.rate

    try:
        for _ in range(ctx.runs):
            with PeakRss("ServeReplica:gateway:gateway") as peak:
                ours.add(load(f"{ctx.base}/models/bench-noop/tasks", 202, headers))
            memory.add(peak.peak)
            floor.add(load(f"{floor_app.url}/models/bench-noop/tasks", 202, floor_app.headers()))
            plain.add(load(f"{ctx.base}/plain/noop", 200, {"Content-Type": "application/json"}))
            doubled.add(
                load(
                    f"{ctx.base}/models/bench-noop/tasks",
                    202,
                    headers,
                    threads=2,
                    connections=2 * CONNECTIONS,
                )
            )
    finally:
        floor_app.close()
        serve.delete("plain")
        serve.delete("bench-noop")
    proxied = peers.proxy_peer(ctx.seconds, ctx.runs)
    errors += int(proxied["errors"])  # type: ignore[call-overload]
    via_proxy = Series([float(v) for v in proxied["ours"]])  # type: ignore[attr-defined]
    plain_proxy = Series([float(v) for v in proxied["plain"]])  # type: ignore[attr-defined]
    ctx.memory["gateway under submit load"] = memory
    spread = (max(ours.values) - min(ours.values)) / statistics.median(ours.values)
    return [
        Row(
            f"Submit path (req/s, wrk {CONNECTIONS} connections)",
            ours.fmt(),
            f"floor, bare uvicorn doing the same work: {floor.fmt()}",
            f"{ratio(ours, floor):.2f}×",
            verdict(ratio(ours, floor), 0.5),
            errors,
        ),
        Row(
            "Submit path (same runs)",
            ours.fmt(),
            f"plain Ray Serve no-op, Serve's Python proxy: {plain_proxy.fmt()}",
            f"{ratio(ours, plain_proxy):.2f}×",
            verdict(ratio(ours, plain_proxy), 1.0),
        ),
        Row(
            "Submit path behind Serve's Python proxy instead of HAProxy (req/s)",
            via_proxy.fmt(),
            f"HAProxy (ours above): {ours.fmt()}",
            f"HAProxy {ratio(ours, via_proxy):.2f}× faster",
        ),
        Row(
            "Plain Ray Serve no-op endpoint behind HAProxy (req/s)",
            plain.fmt(),
            f"behind Serve's Python proxy: {plain_proxy.fmt()}",
            f"{ratio(plain, plain_proxy):.2f}×",
        ),
        Row(
            "Submit path read by wrk with 2 threads and 64 connections (req/s)",
            doubled.fmt(),
            f"1 thread, 32 connections: {ours.fmt()}",
            f"{ratio(doubled, ours):.2f}× (runs spread ±{spread / 2:.0%})",
        ),
    ]
