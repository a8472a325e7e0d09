"""What a user is using now, against their limits (shown to them and to admins)."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field

from app.core.redis_scripts import store_errors
from app.sharing.leases import OPEN_STREAMS, WEBHOOKS_IN_FLIGHT, Leases
from app.sharing.limits import UserLimits
from app.tasks.store import ResultStore


class ModelUsage(BaseModel):
    model: str
    queued_or_running: int = Field(
        description="Tasks in the model's queue, running or waiting for a retry."
    )
    held: int = Field(description="Tasks waiting their turn (fair share); they count too.")


class Usage(BaseModel):
    models: list[ModelUsage] = Field(description="Live models the user has tasks on.")
    open_streams: int = Field(description="Event streams and long-polls open now.")
    webhooks_in_flight: int = Field(description="Webhook deliveries under way now.")
    submit_tokens: float | None = Field(
        description="Submit calls that may come at once now (null: no limit)."
    )


async def read_usage(
    store: ResultStore, leases: Leases, login: str, models: list[str], limits: UserLimits
) -> Usage:
    """The user's usage now, over every replica.

    Raises:
        StoreError: Redis is unreachable.
    """
    shares = [(model, *(await store.share(model, login))) for model in models]
    return Usage(
        models=[
            ModelUsage(model=model, queued_or_running=released + held, held=held)
            for model, released, held in shares
            if released or held
        ],
        open_streams=await leases.count(OPEN_STREAMS, login),
        webhooks_in_flight=await leases.count(WEBHOOKS_IN_FLIGHT, login),
        submit_tokens=await _tokens(store, login, limits),
    )


async def _tokens(store: ResultStore, login: str, limits: UserLimits) -> float | None:
    """The submit bucket's tokens now (the bucket refills as `BUCKET_LUA` computes it)."""
    if limits.submits_per_s < 0 or limits.submit_burst < 0:
        return None
    with store_errors():
        raw = await store.redis.hmget(store.bucket_key(login), ["t", "ts"])  # type: ignore[misc,unused-ignore]
    if raw[0] is None:
        return float(limits.submit_burst)
    tokens, stamp = float(raw[0]), float(raw[1] or 0)
    refilled = tokens + max(0.0, time.time() - stamp) * limits.submits_per_s
    return round(min(float(limits.submit_burst), refilled), 3)
