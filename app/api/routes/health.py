"""Liveness and readiness probes, and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import ServicesDep
from app.api.routing import BoundedJsonRoute
from app.api.schemas import HealthOut, error_responses
from app.catalog.catalog import LiveModel
from app.core.broker import QueueNames
from app.core.errors import AppError, Unauthorized
from app.core.metrics import (
    DEAD_LETTER_MESSAGES,
    DEPENDENCY_UP,
    LIVE_MODELS,
    MODEL_DISABLED,
    MODEL_INFO,
    MODEL_INSTANCES,
    NODE_MEMORY,
    QUEUE_MESSAGES,
    REPLICA_MEMORY,
    TASKS_IN_FLIGHT,
    Gauge,
    Snapshot,
    gauge_values,
    render,
)
from app.core.redis_scripts import StoreError
from app.services import Services
from registry.client import RegistryUnavailable
from registry.schemas import ReplicaStatus

logger = logging.getLogger(__name__)

router = APIRouter(tags=["operations"], route_class=BoundedJsonRoute)


@router.get("/health/live", response_model=HealthOut)
async def live() -> HealthOut:
    """The gateway process is up."""
    return HealthOut(status="ok")


async def _redis_state(services: Services) -> str:
    try:
        await asyncio.wait_for(services.store.ping(), services.settings.io_timeout_s)
    except (StoreError, TimeoutError) as exc:
        logger.warning("readiness: Redis is down: %s", exc or "timeout")
        return "down"
    return "ok"


async def _rabbitmq_state(services: Services) -> str:
    try:
        ok = await asyncio.wait_for(
            services.publisher.is_connected(), services.settings.io_timeout_s
        )
    except TimeoutError:
        ok = False
    return "ok" if ok else "down"


async def _registry_state(services: Services) -> str:
    try:
        await services.catalog.snapshot()
    except AppError as exc:
        logger.warning("readiness: the registry is down: %s", exc.detail)
        return "down"
    return "ok"


async def readiness(services: Services) -> dict[str, str]:
    """Whether Redis, RabbitMQ and the registry answer: "ok" or "down" for each (why is
    logged, never sent: a probe's answer is public)."""
    results = await asyncio.gather(
        _redis_state(services), _rabbitmq_state(services), _registry_state(services)
    )
    return dict(zip(("redis", "rabbitmq", "registry"), results, strict=True))


@router.get("/health/ready", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def ready(services: ServicesDep) -> Response:
    """Redis, RabbitMQ and the registry are all reachable."""
    checks = await readiness(services)
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        HealthOut(status="ok" if healthy else "unavailable", checks=checks).model_dump(),
        status_code=200 if healthy else 503,
    )


@router.get("/metrics", response_class=Response, responses=error_responses(401))
async def metrics(services: ServicesDep, authorization: MetricsAuthorization = None) -> Response:
    """Prometheus metrics of the whole platform: every gateway and model replica, the
    registry's live models, and the queues. With `APP_METRICS_TOKEN` set, only for a bearer
    of that token."""
    _check_scrape_token(services, authorization)
    timeout = services.settings.io_timeout_s
    snapshot: Snapshot = {}
    live: list[LiveModel] = []
    registry_up = False
    try:
        await asyncio.wait_for(services.push_metrics(), timeout)
        snapshot = await asyncio.wait_for(services.registry.metrics(), timeout)
        live = await services.catalog.live()
        registry_up = True
    except (AppError, RegistryUnavailable, TimeoutError) as exc:
        # Still answer: the registry's gauges are missing, this replica's own counters are not.
        logger.warning("metrics without the registry: %s", exc)
        snapshot = services.metrics.snapshot()
    names = [model.view.name for model in live]
    queues = [name for model in names for name in (model, QueueNames.for_model(model).dead_letter)]
    try:
        lengths = await asyncio.wait_for(services.publisher.queue_lengths(queues), timeout)
    except TimeoutError:
        lengths = {}
    inflight = gauge_values(snapshot, TASKS_IN_FLIGHT)
    gauges = [Gauge(LIVE_MODELS, (), float(len(live)))]
    gauges += await _dependency_gauges(services, registry_up=registry_up)
    gauges += await _replica_gauges(services)
    for name in await _disabled(services):
        gauges.append(Gauge(MODEL_DISABLED, (name,), 1.0))
    for model in live:
        name = model.view.name
        gauges.append(Gauge(MODEL_INFO, (name,), 1.0))
        gauges.append(Gauge(MODEL_INSTANCES, (name,), float(model.view.instances)))
        gauges.append(Gauge(TASKS_IN_FLIGHT, (name,), inflight.get((name,), 0.0)))
        ready = lengths.get(name)
        if ready is not None:
            gauges.append(Gauge(QUEUE_MESSAGES, (name, "ready"), float(ready)))
        gauges.append(Gauge(QUEUE_MESSAGES, (name, "unacked"), inflight.get((name,), 0.0)))
        dead = lengths.get(QueueNames.for_model(name).dead_letter)
        if dead is not None:
            gauges.append(Gauge(DEAD_LETTER_MESSAGES, (name,), float(dead)))
    return Response(render(snapshot, gauges), media_type=CONTENT_TYPE_LATEST)


MetricsAuthorization = Annotated[str | None, Header(include_in_schema=False)]


def _check_scrape_token(services: Services, authorization: str | None) -> None:
    expected = services.settings.metrics_token
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("/metrics needs the scrape token (APP_METRICS_TOKEN) as a bearer token")


async def _dependency_gauges(services: Services, *, registry_up: bool) -> list[Gauge]:
    """Whether Redis, RabbitMQ and the registry answered this scrape (alerts watch these)."""
    redis, rabbitmq = await asyncio.gather(_redis_state(services), _rabbitmq_state(services))
    return [
        Gauge(DEPENDENCY_UP, ("redis",), float(redis == "ok")),
        Gauge(DEPENDENCY_UP, ("rabbitmq",), float(rabbitmq == "ok")),
        Gauge(DEPENDENCY_UP, ("registry",), float(registry_up)),
    ]


async def _replica_gauges(services: Services) -> list[Gauge]:
    """Memory of every replica and of the nodes they run on, from their latest reports."""
    try:
        reports = await services.replica_reports()
    except (AppError, RegistryUnavailable, TimeoutError):
        return []
    gauges: list[Gauge] = []
    nodes: dict[str, ReplicaStatus] = {}
    for name, detail, status in reports:
        replica = (name, detail.instance_id, status.node_id)
        gauges.append(Gauge(REPLICA_MEMORY, replica, float(status.rss_bytes)))
        nodes[status.node_id] = status
    for node, status in sorted(nodes.items()):
        address = status.node_address
        total, available = status.node_memory_total_bytes, status.node_memory_available_bytes
        gauges.append(Gauge(NODE_MEMORY, (node, address, "total"), float(total)))
        gauges.append(Gauge(NODE_MEMORY, (node, address, "available"), float(available)))
    return gauges


async def _disabled(services: Services) -> list[str]:
    try:
        return sorted(await services.switches.disabled())
    except StoreError:
        return []
