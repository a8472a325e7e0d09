"""Quotas: submit throughput of a user whose limits are all checked against one without limits.

Both users submit to the same model through the same gateway in the same run, with wrk
(32 connections): the limited one has finite limits high enough never to be reached (so every
submit checks them and takes a token), the other has none (the checks are skipped).
"""

from __future__ import annotations

import asyncio
import json
import os

from ray import serve

from benchmarks import wrk
from benchmarks.harness import Context, Row, Series, deploy_model, ratio, token, verdict
from benchmarks.models import Noop

CONNECTIONS = 32
NOTES = [
    "Quotas: the same submit load (wrk, 32 connections) from a user whose limits are all "
    "checked (finite, never reached: 10⁶ submits/s, 10⁹ tasks queued) and from one with none.",
]


def set_limits(login: str, **limits: float) -> None:
    """As an admin does, through the limits store the gateway reads."""
    from redis.asyncio import Redis

    from app.core.settings import get_settings
    from app.sharing.limits import LimitOverrides, LimitStore, UserLimits

    async def apply() -> None:
        settings = get_settings()
        redis = Redis.from_url(os.environ["APP_REDIS_URL"])
        store = LimitStore(
            redis, prefix=os.environ["APP_REDIS_PREFIX"], defaults=UserLimits.defaults(settings)
        )
        await store.update(login, LimitOverrides(**limits))
        await redis.aclose()

    asyncio.run(apply())


def run(ctx: Context) -> list[Row]:
    deploy_model(Noop, "bench-noop")
    limited, free = token(ctx.base, with_login=True), token(ctx.base, with_login=True)
    set_limits(limited[1], submits_per_s=1e6, submit_burst=1e6, active_tasks=10**9)
    set_limits(free[1], submits_per_s=-1, submit_burst=-1, active_tasks=-1)
    body = json.dumps({"text": "hello"})
    on, off = Series(), Series()
    errors = 0
    for _ in range(ctx.runs):
        for headers, series in ((limited[0], on), (free[0], off)):
            result = wrk.run(
                f"{ctx.base}/models/bench-noop/tasks",
                method="POST",
                body=body,
                headers={**headers, "Content-Type": "application/json"},
                expect=202,
                connections=CONNECTIONS,
                seconds=ctx.seconds,
            )
            series.add(result.rate)
            errors += result.errors
    serve.delete("bench-noop")
    r = ratio(on, off)
    return [
        Row(
            f"Submit with quotas checked (req/s, wrk {CONNECTIONS} connections)",
            on.fmt(),
            f"same gateway, a user without limits: {off.fmt()}",
            f"{r:.2f}×",
            verdict(r, 0.9),
            errors,
        )
    ]
