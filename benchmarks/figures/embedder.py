"""The embedder example (all-MiniLM-L6-v2 on PyTorch, CPU): draining queued tasks with and
without dynamic batching, against plain Ray Serve's `@serve.batch` over HTTP."""

from __future__ import annotations

import json
import time

from ray import serve

from benchmarks import peers, wrk
from benchmarks.figures.drain import drain_tasks
from benchmarks.harness import Context, Row, Series, deploy_model, pct, ratio, rss_mb, verdict
from deployments.embedder import Embedder
from protos.embedder_pb2 import EmbedRequest

NAME = "bench-embedder"
BATCH = 32
PEER_CLIENTS = 64
NOTES = [
    "Embedder: one replica drains a pre-filled queue of distinct single-sentence tasks, "
    f"batched (`max_batch_size` {BATCH}, 10 ms window) or one task per forward pass (the "
    "replica still runs up to its prefetch of tasks at once). Run time is from a replica "
    "taking the task to its result being stored (batch wait included).",
    f"Embedder over HTTP: the same path for both, wrk keeping {PEER_CLIENTS} connections "
    "busy posting one sentence: ours is `POST /models/bench-embedder/infer` (a handle call "
    f"to the replica, batched by Serve's `@serve.batch` up to {BATCH}); the peer is a plain "
    f"Serve FastAPI deployment with `@serve.batch({BATCH}, 10 ms)` around the same network.",
]

SUBJECTS = ["The queue", "A replica", "The gateway", "Each model", "The cluster", "A client"]
VERBS = ["drains", "answers", "batches", "retries", "watches", "scales"]
OBJECTS = ["every task", "the backlog", "a request", "its results", "the old jobs", "the load"]


def sentence(i: int) -> str:
    return f"{SUBJECTS[i % 6]} {VERBS[i // 6 % 6]} {OBJECTS[i // 36 % 6]} for the {i}th time today."


def _payloads(n: int, offset: int) -> list[bytes]:
    """Distinct texts per run, so no run repeats another's work."""
    return [EmbedRequest(text=sentence(offset + i)).SerializeToString() for i in range(n)]


def _http_rate(url: str, headers: dict[str, str], seconds: float) -> tuple[float, int]:
    result = wrk.run(
        url,
        method="POST",
        body=json.dumps({"text": sentence(7)}),
        headers={**headers, "Content-Type": "application/json"},
        connections=PEER_CLIENTS,
        seconds=seconds,
    )
    return result.rate, result.errors


def run(ctx: Context) -> list[Row]:
    n = 500 if ctx.quick else 2000
    deploy_model(Embedder, NAME, overrides={"num_cpus": 0})
    time.sleep(2)
    at_rest = rss_mb(f"ServeReplica:{NAME}")
    serve.delete(NAME)
    batched, single, peer = Series(), Series(), Series()
    b50, b99, s50, s99, peak = Series(), Series(), Series(), Series(), Series()
    errors = 0
    for run_index in range(ctx.runs):
        offset = run_index * 2 * n
        for overrides, rate, p50, p99, payloads in (
            ({"max_batch_size": BATCH}, batched, b50, b99, _payloads(n, offset)),
            ({"max_batch_size": 1}, single, s50, s99, _payloads(n, offset + n)),
        ):
            drained = drain_tasks(
                Embedder, NAME, n, payloads=payloads, overrides={"num_cpus": 0, **overrides}
            )
            rate.add(drained.rate)
            errors += drained.failed
            p50.add(pct(drained.run_times(), 0.5) * 1000)
            p99.add(pct(drained.run_times(), 0.99) * 1000)
            if overrides["max_batch_size"] > 1:
                peak.add(drained.peak_rss_mb)
    serve.run(peers.plain_embedder_app(), name="plain-embedder", route_prefix="/plain-embedder")
    deploy_model(Embedder, NAME, overrides={"num_cpus": 0, "max_batch_size": BATCH})
    over_http = Series()
    for _ in range(ctx.runs):
        rate, failed = _http_rate(f"{ctx.base}/plain-embedder/embed", {}, ctx.seconds * 2)
        peer.add(rate)
        errors += failed
        rate, failed = _http_rate(f"{ctx.base}/models/{NAME}/infer", ctx.headers, ctx.seconds * 2)
        over_http.add(rate)
        errors += failed
    serve.delete("plain-embedder")
    serve.delete(NAME)
    speedup = ratio(batched, single)
    ctx.memory["embedder replica at rest"] = Series([at_rest])
    ctx.memory["embedder replica draining batched"] = peak
    return [
        Row(
            f"Embedder drain, 1 replica, {n} queued single-sentence tasks: batched (tasks/s) "
            f"[run time p50 {b50.fmt()} / p99 {b99.fmt()} ms]",
            batched.fmt(),
            f"unbatched: {single.fmt()} [p50 {s50.fmt()} / p99 {s99.fmt()} ms]",
            f"{speedup:.2f}×",
            verdict(speedup, 3.0),
            errors,
        ),
        Row(
            f"Embedder over HTTP, batched, wrk {PEER_CLIENTS} connections (req/s)",
            over_http.fmt(),
            f"plain Serve `@serve.batch`, same path: {peer.fmt()}",
            f"{ratio(over_http, peer):.2f}×",
        ),
    ]
