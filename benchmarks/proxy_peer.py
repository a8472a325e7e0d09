"""The same submit load through Serve's Python proxy: a Ray instance of its own, run as a
separate process by the submit figure (a process starts Ray with one ingress or the other).

It measures, with wrk, a plain Serve no-op FastAPI ingress and our gateway's submit path,
both behind Serve's default HTTP proxy, and prints them as one JSON line.

    python -m benchmarks.proxy_peer SECONDS RUNS
"""

from __future__ import annotations

import json
import sys
import time

from benchmarks import peers, wrk
from benchmarks.harness import deploy_gateway, deploy_model, start_platform, token
from benchmarks.models import Noop

CONNECTIONS = 32


def main(argv: list[str]) -> int:
    from ray import serve

    seconds, runs = float(argv[1]), int(argv[2])
    base = start_platform(ingress="proxy")
    deploy_gateway()
    deploy_model(Noop, "bench-noop")
    serve.run(peers.plain_serve_app(4096), name="plain", route_prefix="/plain")
    time.sleep(2)
    headers = {**token(base), "Content-Type": "application/json"}
    body = json.dumps({"text": "hello"})
    results: dict[str, list[float]] = {"plain": [], "ours": []}
    errors = 0
    for _ in range(runs):
        plain = wrk.run(
            f"{base}/plain/noop",
            method="POST",
            body=body,
            headers={"Content-Type": "application/json"},
            connections=CONNECTIONS,
            seconds=seconds,
        )
        ours = wrk.run(
            f"{base}/models/bench-noop/tasks",
            method="POST",
            body=body,
            headers=headers,
            expect=202,
            connections=CONNECTIONS,
            seconds=seconds,
        )
        results["plain"].append(plain.rate)
        results["ours"].append(ours.rate)
        errors += plain.errors + ours.errors
    serve.shutdown()
    print("PEER_JSON " + json.dumps({**results, "errors": errors}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
