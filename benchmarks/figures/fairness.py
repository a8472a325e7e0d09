"""Fair share: a second user's tasks behind a first user's backlog, with fair share and without.

User A queues 3,000 tasks of 20 ms (three batches) on one replica that runs 4 at once; user B
then submits 10 tasks. Reported: B's submit → result latency and A's drain rate, on a model
with fair share (its default window) and on the same model whose window is larger than the
backlog (every task straight into the queue: first come, first served), in the same run.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from ray import serve

from benchmarks.harness import Context, Row, Series, deploy_model, pct, token, wait_until
from deployments.echo import Echo

BACKLOG = 3000
TASK_MS = 20
CONCURRENCY = 4
B_TASKS = 10
NOTES = [
    f"Fair share: A queues {BACKLOG:,} tasks of {TASK_MS} ms (batches of 1,000) on one replica "
    f"running {CONCURRENCY} at once, then B submits {B_TASKS}; B's latency is submit → "
    "finished, A's drain rate is A's tasks over first start → last finish. Without fair share "
    "is the same model with a window larger than the backlog (first come, first served).",
]


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def scenario(ctx: Context, name: str, backlog: int) -> tuple[list[float], float, int]:
    """B's latencies (s), A's drain rate (tasks/s), and tasks that did not succeed."""
    alice, bob = token(ctx.base), token(ctx.base)
    errors = 0
    with httpx.Client(base_url=ctx.base, timeout=60) as http:
        alice_ids: list[str] = []
        for start in range(0, backlog, 1000):
            answer = http.post(
                f"/models/{name}/batches",
                json=[{"text": "a", "delay_ms": TASK_MS}] * min(1000, backlog - start),
                headers=alice,
            )
            answer.raise_for_status()
            alice_ids += answer.json()["task_ids"]
        submitted: dict[str, float] = {}
        for _ in range(B_TASKS):
            sent = time.time()
            answer = http.post(
                f"/models/{name}/tasks", json={"text": "b", "delay_ms": TASK_MS}, headers=bob
            )
            answer.raise_for_status()
            submitted[answer.json()["task_id"]] = sent
        latencies = []
        for task_id, sent in submitted.items():
            while True:
                document = http.get(
                    f"/models/{name}/result",
                    params={"task_id": task_id, "wait": 30},
                    headers=bob,
                )
                if document.status_code == 200:
                    break
            body = document.json()
            errors += body["status"] != "succeeded"
            latencies.append(_epoch(body["finished_at"]) - sent)

        def drained() -> bool:
            usage = http.get("/account", headers=alice).json()["usage"]["models"]
            return not any(m["model"] == name for m in usage)

        wait_until(drained, timeout_s=600, interval_s=1)
        starts, ends = [], []
        for start in range(0, len(alice_ids), 200):
            for task_id in alice_ids[start : start + 200]:
                body = http.get(
                    f"/models/{name}/result", params={"task_id": task_id}, headers=alice
                ).json()
                errors += body["status"] != "succeeded"
                if body.get("started_at") and body.get("finished_at"):
                    starts.append(_epoch(body["started_at"]))
                    ends.append(_epoch(body["finished_at"]))
        rate = len(ends) / (max(ends) - min(starts)) if ends else 0.0
    return latencies, rate, errors


def run(ctx: Context) -> list[Row]:
    backlog = 600 if ctx.quick else BACKLOG
    rows = []
    results: dict[str, tuple[Series, Series, Series, int]] = {}
    for label, window in (("fair share", None), ("first come, first served", 10**6)):
        name = "bench-fair" if window is None else "bench-fifo"
        overrides = {"max_concurrency": CONCURRENCY, "max_replicas": 1}
        if window is not None:
            overrides["fair_share_window"] = window
        deploy_model(Echo, name, overrides=overrides)
        p50, p99, drain = Series(), Series(), Series()
        errors = 0
        for _ in range(ctx.runs):
            latencies, rate, failed = scenario(ctx, name, backlog)
            p50.add(pct(latencies, 0.5))
            p99.add(max(latencies))
            drain.add(rate)
            errors += failed
        serve.delete(name)
        results[label] = (p50, p99, drain, errors)
    fair, fifo = results["fair share"], results["first come, first served"]
    p99 = fair[1].median
    drain_ratio = fair[2].median / fifo[2].median if fifo[2].median else float("nan")
    rows.append(
        Row(
            f"B's {B_TASKS} tasks behind A's {backlog:,}: submit → result p50 / max (s)",
            f"{fair[0].fmt(2)} / {fair[1].fmt(2)}",
            f"without fair share: {fifo[0].fmt(2)} / {fifo[1].fmt(2)}",
            f"{fifo[0].median / fair[0].median:.0f}× sooner at p50",
            f"max ≤ 2 s: {'met' if p99 <= 2 else 'not met'}",
            fair[3] + fifo[3],
        )
    )
    rows.append(
        Row(
            "A's drain meanwhile (tasks/s)",
            fair[2].fmt(),
            f"without fair share: {fifo[2].fmt()}",
            f"{drain_ratio:.2f}×",
            f"≥ 0.9×: {'met' if drain_ratio >= 0.9 else 'not met'}",
            0,
        )
    )
    return rows
