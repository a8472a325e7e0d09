"""Streamed outputs: hundreds of task event streams open on one gateway replica, each chunk
timed from the model's `yield` to the client, beside Ray Serve's own streaming (a generator
deployment called through a streaming handle and relayed as server-sent events)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
from ray import serve

from benchmarks import peers
from benchmarks.harness import ROOT, Context, Row, Series, deploy_model, pct, tail_name

CHUNKS = 15
EVERY_MS = 1000
# Time for every stream to open before the first chunk is yielded.
AFTER_MS = 15_000


@dataclass(frozen=True)
class Plan:
    """What each stream gets: `chunks` chunks `every_ms` apart, the first after `after_ms`."""

    streams: int
    chunks: int = CHUNKS
    every_ms: int = EVERY_MS
    after_ms: int = AFTER_MS

    def query(self, index: int) -> str:
        """Stream `index`'s plan: the streams' chunks spread evenly over each interval (500
        streams at one chunk a second are 500 chunks a second, not one burst of 500)."""
        after_ms = self.after_ms + index * self.every_ms // self.streams
        return f"chunks={self.chunks}&every_ms={self.every_ms}&after_ms={after_ms}"

    def text(self, index: int) -> str:
        return self.query(index).replace("&", " ")

    @property
    def seconds(self) -> float:
        return (self.after_ms + (self.chunks + 1) * self.every_ms) / 1000


NOTES = [
    f"Streams: a model yields {CHUNKS} chunks {EVERY_MS} ms apart (after {AFTER_MS // 1000} s, "
    "so every stream is open first; --quick: 100 streams of 4), the streams' chunks spread "
    "evenly over each interval, each carrying the wall-clock "
    "time of its `yield`; a client process of its own holds one server-sent event stream per task "
    "(`GET /models/{name}/tasks/{id}/events`) and times each chunk's arrival. All the streams "
    "are on one gateway replica behind HAProxy, and the tasks on one model replica. The peer "
    "is plain Ray Serve: the same generator as a deployment, called through a streaming handle "
    "by a FastAPI ingress that relays each item as an event, one request per stream, behind "
    "the same HAProxy: a call, with nothing kept.",
]


def _follow(ctx: Context, plan: Plan, paths: list[str]) -> dict:
    """Open every path as a stream in a client process; its lags, failures and counts."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as listing:
        json.dump(paths, listing)
    client = subprocess.run(  # noqa: S603 - this interpreter, the stream client module
        [
            sys.executable,
            "-m",
            "benchmarks.stream_client",
            ctx.base,
            ctx.headers["Authorization"],
            listing.name,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=plan.seconds + 120,
        check=True,
    )
    Path(listing.name).unlink(missing_ok=True)
    line = next(x for x in client.stdout.splitlines() if x.startswith("STREAMS_JSON "))
    return json.loads(line.split(" ", 1)[1])


def _ours(ctx: Context, plan: Plan) -> dict:
    accepted = httpx.post(
        f"{ctx.base}/models/bench-ticker/batches",
        json=[{"text": plan.text(i)} for i in range(plan.streams)],
        headers=ctx.headers,
        timeout=60,
    )
    accepted.raise_for_status()
    ids = accepted.json()["task_ids"]
    return _follow(ctx, plan, [f"/models/bench-ticker/tasks/{i}/events" for i in ids])


def _peer(ctx: Context, plan: Plan) -> dict:
    paths = [f"/plain-streams/ticks?{plan.query(i)}" for i in range(plan.streams)]
    return _follow(ctx, plan, paths)


def run(ctx: Context) -> list[Row]:
    from benchmarks.models import Ticker

    plan = Plan(100, chunks=4, after_ms=5000) if ctx.quick else Plan(500)
    streams = plan.streams
    window = streams + 16
    deploy_model(
        Ticker, "bench-ticker", overrides={"max_concurrency": window, "fair_share_window": window}
    )
    serve.run(peers.plain_streams_app(), name="plain-streams", route_prefix="/plain-streams")
    ours50, ours99, peer50, peer99 = Series(), Series(), Series(), Series()
    errors = samples = 0
    for _ in range(ctx.runs):
        for measure, p50, p99 in ((_ours, ours50, ours99), (_peer, peer50, peer99)):
            result = measure(ctx, plan)
            lags = result["lags"]
            samples = len(lags)
            errors += len(result["failures"]) + (streams * plan.chunks - samples)
            p50.add(pct(lags, 0.5) * 1000)
            p99.add(pct(lags, 0.99) * 1000)
    serve.delete("plain-streams")
    serve.delete("bench-ticker")
    tail = tail_name(samples)
    return [
        Row(
            f"{streams} task event streams on one gateway replica: chunk `yield` → client, "
            "p50 (ms)",
            ours50.fmt(1),
            f"plain Serve streaming handle relayed as SSE: {peer50.fmt(1)}",
            f"{ours50.median / peer50.median:.2f}×",
            f"≤ 20 ms: {'met' if ours50.median <= 20 else 'not met'}",
            errors,
        ),
        Row(
            f"… the same, {tail} (ms)",
            ours99.fmt(1),
            f"plain Serve: {peer99.fmt(1)}",
            f"{ours99.median / peer99.median:.2f}×",
            f"≤ 100 ms: {'met' if ours99.median <= 100 else 'not met'}",
        ),
    ]
