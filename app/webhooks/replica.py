"""The Ray Serve deployment that runs the `WebhookDispatcher` (part of the gateway's app)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
from aio_pika.abc import AbstractRobustConnection

from app.core.broker import connect
from app.core.logging import configure_logging
from app.core.metrics import MetricsRecorder
from app.core.settings import get_settings
from app.tasks.store import ResultStore
from app.webhooks.dispatcher import WebhookDispatcher
from registry.client import RayRegistry, report_metrics_forever

DRAIN_TIMEOUT_S = 10.0


class WebhookReplica:
    """Consumes the webhook queue; several replicas share it."""

    async def __init__(self) -> None:  # type: ignore[misc]
        configure_logging()
        settings = get_settings()
        self._store = ResultStore.from_settings(settings)
        metrics = MetricsRecorder()
        # No redirects: a receiver cannot bounce a signed document to a host nobody allowed.
        self._http = httpx.AsyncClient(follow_redirects=False)
        self._dispatcher = WebhookDispatcher(
            self._store, settings, http=self._http, metrics=metrics
        )
        self._connection: AbstractRobustConnection = await connect(
            str(settings.amqp_url),
            attempts=settings.connect_attempts,
            delay_s=settings.connect_retry_delay_s,
        )
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._dispatcher.attach(channel)
        await self._dispatcher.start()
        registry = RayRegistry.from_settings(settings)
        self._reporter = asyncio.get_running_loop().create_task(
            report_metrics_forever(
                registry,
                f"webhooks-{uuid.uuid4().hex[:12]}",
                metrics.snapshot,
                settings.ping_interval_s,
            )
        )

    async def check_health(self) -> None:
        if self._connection.is_closed:
            raise RuntimeError("webhooks: RabbitMQ connection closed")

    async def __del__(self) -> None:
        self._reporter.cancel()
        try:
            await self._dispatcher.stop(drain_timeout_s=DRAIN_TIMEOUT_S)
        finally:
            with contextlib.suppress(Exception):
                await self._connection.close()
            await self._http.aclose()
            await self._store.close()
