"""Liveness and readiness probes, and the Prometheus endpoint."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import ServicesDep
from app.api.schemas import HealthOut
from app.core.errors import AppError
from app.core.store import StoreError

router = APIRouter(tags=["operations"])


@router.get("/health/live", response_model=HealthOut)
async def live() -> HealthOut:
    """The gateway process is up."""
    return HealthOut(status="ok")


@router.get("/health/ready", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def ready(services: ServicesDep) -> Response:
    """Redis, RabbitMQ and the registry are all reachable."""
    timeout = services.settings.io_timeout_s

    async def redis() -> str:
        try:
            await asyncio.wait_for(services.store.ping(), timeout)
        except (StoreError, TimeoutError) as exc:
            return f"down: {exc or 'timeout'}"
        return "ok"

    async def rabbitmq() -> str:
        try:
            ok = await asyncio.wait_for(services.publisher.is_connected(), timeout)
        except TimeoutError:
            ok = False
        return "ok" if ok else "down"

    async def registry() -> str:
        try:
            await services.catalog.snapshot()
        except AppError as exc:
            return f"down: {exc.detail}"
        return "ok"

    results = await asyncio.gather(redis(), rabbitmq(), registry())
    checks = dict(zip(("redis", "rabbitmq", "registry"), results, strict=True))
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        HealthOut(status="ok" if healthy else "unavailable", checks=checks).model_dump(),
        status_code=200 if healthy else 503,
    )


@router.get("/metrics", include_in_schema=True, response_class=Response)
async def metrics() -> Response:
    """Prometheus metrics of this gateway replica."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
