"""Batch submit: tasks accepted per second, 100 per request, against a plain Serve endpoint
that takes the same 100-message body."""

from __future__ import annotations

import json

from ray import serve

from benchmarks import peers, wrk
from benchmarks.harness import Context, Row, Series, deploy_model, ratio
from benchmarks.models import Noop

PER_REQUEST = 100
CONNECTIONS = 8
NOTES = [
    f"Batch submit: wrk keeps {CONNECTIONS} connections busy posting {PER_REQUEST} request "
    "messages per call while the model drains them; the peer is a plain Serve FastAPI "
    "endpoint behind the same ingress that parses the same JSON array and answers with "
    "ids, storing and queuing nothing.",
]


def run(ctx: Context) -> list[Row]:
    serve.run(peers.plain_serve_app(4096), name="plain", route_prefix="/plain")
    deploy_model(Noop, "bench-noop")
    body = json.dumps([{"text": f"b{i}"} for i in range(PER_REQUEST)])
    ours, peer = Series(), Series()
    errors = 0
    for _ in range(ctx.runs):
        mine = wrk.run(
            f"{ctx.base}/models/bench-noop/batches",
            method="POST",
            body=body,
            headers={**ctx.headers, "Content-Type": "application/json"},
            expect=202,
            connections=CONNECTIONS,
            seconds=ctx.seconds,
        )
        plain = wrk.run(
            f"{ctx.base}/plain/noop-batch",
            method="POST",
            body=body,
            headers={"Content-Type": "application/json"},
            connections=CONNECTIONS,
            seconds=ctx.seconds,
        )
        ours.add(mine.rate * PER_REQUEST)
        peer.add(plain.rate * PER_REQUEST)
        errors += mine.errors + plain.errors
    serve.delete("plain")
    serve.delete("bench-noop")
    r = ratio(ours, peer)
    return [
        Row(
            f"Batch submit, {PER_REQUEST} tasks per request (tasks accepted/s)",
            ours.fmt(),
            f"plain Serve endpoint taking the same body (messages/s): {peer.fmt()}",
            f"{r:.2f}×",
            errors=errors,
        )
    ]
