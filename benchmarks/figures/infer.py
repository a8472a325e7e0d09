"""One-call answers: /infer and the Open Inference Protocol on `iris`, against plain Ray Serve
running the same scikit-learn model; and the cache of identical requests, hit against miss."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time

import httpx
from ray import serve

from benchmarks import peers, wrk
from benchmarks.harness import (
    ROOT,
    Context,
    Row,
    Series,
    deploy_model,
    pct,
    ratio,
    tail_name,
    verdict,
)
from deployments.iris import Iris

CONCURRENCY = 16
PROBES_PER_S = 20.0
SETOSA = {"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2}
NOTES = [
    "Synchronous call: wrk keeps 16 connections busy posting one iris flower; ours is "
    "`POST /models/iris/infer` (auth, schema check, protobuf decode, a handle call to the "
    "replica that also consumes the queue, encode); the peer is a plain Serve FastAPI ingress "
    "calling a deployment by handle that runs the same scikit-learn pipeline.",
    "OIP: the same flower as JSON tensors to `/v2/models/iris/infer` (tritonclient's own "
    "round trip is in the e2e tests), the same load and the same peer. Over gRPC: "
    "`ModelInfer` with the same tensors to the gateway replica's gRPC port, 16 calls in "
    "flight from a grpc.aio client process of its own (wrk speaks no gRPC), beside the REST "
    "OIP row.",
    "Cache: submit → result by long-poll at a fixed rate, each probe with a new flower (miss: "
    "the model runs, then fills the cache) or the same flower (hit: the task is created "
    "succeeded and nothing is queued).",
]


def _flower() -> dict[str, float]:
    """A random, valid flower: every probe a distinct request (a cache miss)."""
    return {key: round(value * random.uniform(0.8, 1.2), 6) for key, value in SETOSA.items()}


def _wrk(
    base: str, path: str, body: dict, headers: dict[str, str], seconds: float
) -> wrk.WrkResult:
    return wrk.run(
        f"{base}{path}",
        method="POST",
        body=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
        connections=CONCURRENCY,
        seconds=seconds,
    )


OIP_BODY = {
    "inputs": [
        {"name": name, "shape": [1], "datatype": "FP32", "data": [value]}
        for name, value in SETOSA.items()
    ]
}


async def _submit_to_result(
    base: str, model: str, headers: dict[str, str], seconds: float, same: bool
) -> tuple[list[float], int, int]:
    """Latencies of submit → long-polled result at PROBES_PER_S; and how many were cached."""
    latencies: list[float] = []
    errors = cached = 0
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:

        async def probe() -> None:
            nonlocal errors, cached
            body = SETOSA if same else _flower()
            started = time.perf_counter()
            accepted = await client.post(f"/models/{model}/tasks", json=body, headers=headers)
            if accepted.status_code != 202:
                errors += 1
                return
            result = await client.get(
                f"/models/{model}/result",
                params={"task_id": accepted.json()["task_id"], "wait": 10},
                headers=headers,
            )
            document = result.json()
            if result.status_code != 200 or document["status"] != "succeeded":
                errors += 1
                return
            latencies.append(time.perf_counter() - started)
            cached += bool(document.get("cached"))

        sent = []
        for _ in range(int(PROBES_PER_S * seconds)):
            sent.append(asyncio.create_task(probe()))
            await asyncio.sleep(1 / PROBES_PER_S)
        await asyncio.gather(*sent)
    return latencies, errors, cached


def _wait_cached(base: str, model: str, headers: dict[str, str], timeout_s: float = 60) -> None:
    """Until the gateway's catalog knows the model's cache."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        listed = httpx.get(f"{base}/models", headers=headers).json()
        if any(m["name"] == model and m["cached"] for m in listed):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{model} never showed its cache in /models")


def _grpc(ctx: Context, seconds: float) -> dict:
    """`ModelInfer` calls per second (and p50, errors) over the gateway's gRPC port."""
    done = subprocess.run(  # noqa: S603 - this interpreter, the project's load generator
        [
            sys.executable,
            "-m",
            "benchmarks.grpc_load",
            f"127.0.0.1:{os.environ['APP_GRPC_PORT']}",
            ctx.headers["Authorization"],
            "iris",
            json.dumps(SETOSA),
            str(CONCURRENCY),
            str(seconds),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(ctx: Context) -> list[Row]:
    deploy_model(Iris, "iris")
    serve.run(peers.plain_iris_app(), name="plain-iris", route_prefix="/plain-iris")
    ours, peer, oip, grpc = Series(), Series(), Series(), Series()
    ours50, peer50, oip50, grpc50 = Series(), Series(), Series(), Series()
    errors = oip_errors = grpc_errors = 0
    for _ in range(ctx.runs):
        mine = _wrk(ctx.base, "/models/iris/infer", SETOSA, ctx.headers, ctx.seconds)
        plain = _wrk(ctx.base, "/plain-iris/predict", SETOSA, {}, ctx.seconds)
        spoken = _wrk(ctx.base, "/v2/models/iris/infer", OIP_BODY, ctx.headers, ctx.seconds)
        for series, p50, result in (
            (ours, ours50, mine),
            (peer, peer50, plain),
            (oip, oip50, spoken),
        ):
            series.add(result.rate)
            p50.add(result.p50_ms)
        errors += mine.errors + plain.errors
        oip_errors += spoken.errors
        called = _grpc(ctx, ctx.seconds)
        grpc.add(called["rate"])
        grpc50.add(called["p50_ms"])
        grpc_errors += called["errors"]
    serve.delete("plain-iris")
    rows = [
        Row(
            f"`/infer` on iris, wrk {CONCURRENCY} connections: req/s [p50 {ours50.fmt(1)} ms]",
            ours.fmt(),
            f"plain Serve ingress → handle → sklearn, same ingress: {peer.fmt()} "
            f"[p50 {peer50.fmt(1)} ms]",
            f"{ratio(ours, peer):.2f}×",
            verdict(ratio(ours, peer), 0.9),
            errors,
        ),
        Row(
            f"OIP v2 REST infer on iris (JSON tensors), wrk {CONCURRENCY} connections: req/s "
            f"[p50 {oip50.fmt(1)} ms]",
            oip.fmt(),
            f"same peer: {peer.fmt()}",
            f"{ratio(oip, peer):.2f}×",
            errors=oip_errors,
        ),
        Row(
            f"OIP v2 gRPC `ModelInfer` on iris, {CONCURRENCY} calls in flight: req/s "
            f"[p50 {grpc50.fmt(1)} ms]",
            grpc.fmt(),
            f"REST OIP above: {oip.fmt()} [p50 {oip50.fmt(1)} ms]",
            f"{ratio(grpc, oip):.2f}×",
            errors=grpc_errors,
        ),
    ]
    deploy_model(Iris, "iris", overrides={"cache_ttl_s": 3600})
    _wait_cached(ctx.base, "iris", ctx.headers)
    # Fill the entry of the flower every hit probe sends.
    asyncio.run(_submit_to_result(ctx.base, "iris", ctx.headers, 1 / PROBES_PER_S, same=True))
    hit50, miss50, hit_tail, miss_tail = Series(), Series(), Series(), Series()
    errors = samples = 0
    wrong = 0
    for _ in range(ctx.runs):
        misses, failed, cached = asyncio.run(
            _submit_to_result(ctx.base, "iris", ctx.headers, ctx.seconds, same=False)
        )
        errors += failed
        wrong += cached  # a distinct flower answered from the cache would be a wrong hit
        hits, failed, cached = asyncio.run(
            _submit_to_result(ctx.base, "iris", ctx.headers, ctx.seconds, same=True)
        )
        errors += failed
        wrong += len(hits) - cached  # every one of these must be a hit
        samples = len(hits)
        for p50, tail, values in ((hit50, hit_tail, hits), (miss50, miss_tail, misses)):
            p50.add(pct(values, 0.5) * 1000)
            tail.add(pct(values, 0.99) * 1000)
    serve.delete("iris")
    rows.append(
        Row(
            f"Cache of identical requests, submit → result at {PROBES_PER_S:.0f}/s: hit p50 (ms) "
            f"[{tail_name(samples)} {hit_tail.fmt(1)}]",
            hit50.fmt(1),
            f"miss p50: {miss50.fmt(1)} [{tail_name(samples)} {miss_tail.fmt(1)}]",
            f"{ratio(hit50, miss50):.2f}×",
            errors=errors + wrong,
        )
    )
    return rows
