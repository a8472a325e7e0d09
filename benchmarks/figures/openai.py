"""The OpenAI API against the platform's own routes, on the embedder: `/v1/embeddings` against
`/infer` (the same texts, the same replica), and a Batch API file against the native batch
submit of the same requests."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
from ray import serve

from benchmarks import wrk
from benchmarks.figures.drain import finished
from benchmarks.figures.embedder import BATCH, PEER_CLIENTS, sentence
from benchmarks.harness import Context, Row, Series, deploy_model, ratio, verdict
from deployments.embedder import Embedder

NAME = "bench-oai-embedder"
NATIVE_CHUNK = 1000  # APP_MAX_BATCH_TASKS: the most one native batch submit takes
NOTES = [
    f"OpenAI embeddings: wrk, {PEER_CLIENTS} connections, posts one sentence to "
    "`/v1/embeddings` (`encoding_format` float) or its request message to `/infer`: the "
    f"same embedder replica, batched up to {BATCH} by `@serve.batch`. The `openai` package "
    "itself is a client library (httpx underneath); the e2e suite checks its answers.",
    "OpenAI batch: lines per second from the upload of the JSONL file to the batch "
    "`completed` with its output file written, against the same requests submitted natively "
    f"(`POST /models/{{name}}/batches`, {NATIVE_CHUNK} per call) until the last task "
    "succeeded. Both run on one batched embedder replica.",
]


def _lines(n: int, offset: int) -> bytes:
    return (
        "\n".join(
            json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"model": NAME, "input": sentence(offset + i)},
                }
            )
            for i in range(n)
        )
        + "\n"
    ).encode()


def _openai_batch(ctx: Context, n: int, offset: int) -> tuple[float, int]:
    """Lines/s of one batch through /v1, and the lines that did not succeed."""
    with httpx.Client(base_url=ctx.base, headers=ctx.headers, timeout=60) as http:
        started = time.monotonic()
        upload = http.post(
            "/v1/files",
            files={"file": ("in.jsonl", _lines(n, offset))},
            data={"purpose": "batch"},
        )
        upload.raise_for_status()
        batch = http.post(
            "/v1/batches",
            json={
                "input_file_id": upload.json()["id"],
                "endpoint": "/v1/embeddings",
                "completion_window": "24h",
            },
        ).json()
        while batch["status"] in ("validating", "in_progress", "finalizing"):
            time.sleep(0.05)
            batch = http.get(f"/v1/batches/{batch['id']}").json()
        elapsed = time.monotonic() - started
        counts = batch["request_counts"]
        return n / elapsed, n - counts["completed"]


def _native_batch(ctx: Context, n: int, offset: int) -> tuple[float, int]:
    """Lines/s of the same requests through the native batch submit, until all succeeded."""
    ids: list[str] = []
    with httpx.Client(base_url=ctx.base, headers=ctx.headers, timeout=60) as http:
        started = time.time()  # epoch: the tasks' finish times are
        for start in range(0, n, NATIVE_CHUNK):
            bodies = [
                {"text": sentence(offset + i)} for i in range(start, min(n, start + NATIVE_CHUNK))
            ]
            answer = http.post(f"/models/{NAME}/batches", json=bodies)
            answer.raise_for_status()
            ids += answer.json()["task_ids"]
    ends, failed = asyncio.run(finished(ids))
    if not ends:
        return 0.0, failed
    return (n - failed) / (max(ends) - started), failed


def run(ctx: Context) -> list[Row]:
    n = 1000 if ctx.quick else 10_000
    deploy_model(Embedder, NAME, overrides={"num_cpus": 0, "max_batch_size": BATCH})
    errors = 0
    v1, infer = Series(), Series()
    for _ in range(ctx.runs):
        for path, body, series in (
            (
                "/v1/embeddings",
                {"model": NAME, "input": sentence(11), "encoding_format": "float"},
                v1,
            ),
            (f"/models/{NAME}/infer", {"text": sentence(11)}, infer),
        ):
            result = wrk.run(
                f"{ctx.base}{path}",
                method="POST",
                body=json.dumps(body),
                headers={**ctx.headers, "Content-Type": "application/json"},
                connections=PEER_CLIENTS,
                seconds=ctx.seconds * 2,
            )
            series.add(result.rate)
            errors += result.errors
    ours, native = Series(), Series()
    batch_errors = 0
    for run_index in range(ctx.runs):
        offset = 100_000 + run_index * 2 * n
        rate, failed = _openai_batch(ctx, n, offset)
        ours.add(rate)
        batch_errors += failed
        rate, failed = _native_batch(ctx, n, offset + n)
        native.add(rate)
        batch_errors += failed
    serve.delete(NAME)
    return [
        Row(
            f"`/v1/embeddings` on the embedder, wrk {PEER_CLIENTS} connections (req/s)",
            v1.fmt(),
            f"`/infer`, same texts and replica: {infer.fmt()}",
            f"{ratio(v1, infer):.2f}×",
            verdict(ratio(v1, infer), 0.9),
            errors,
        ),
        Row(
            f"OpenAI batch of {n:,} embeddings lines, upload → completed (lines/s)",
            ours.fmt(),
            f"native batch submit of the same requests → all succeeded: {native.fmt()}",
            f"{ratio(ours, native):.2f}×",
            verdict(ratio(ours, native), 0.9),
            batch_errors,
        ),
    ]
