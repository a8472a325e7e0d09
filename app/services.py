"""The gateway's long-lived clients, opened in the app's lifespan and shared by all requests."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from app.catalog import ModelCatalog
from app.core.broker import Publisher
from app.core.metrics import MetricsRecorder
from app.core.settings import Settings
from app.core.store import ResultStore
from app.core.users import UserStore
from registry.client import RayRegistry, Registry

logger = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    store: ResultStore
    users: UserStore
    publisher: Publisher
    catalog: ModelCatalog
    registry: Registry
    metrics: MetricsRecorder
    # Names this gateway process's metrics in the registry.
    source_id: str = field(default_factory=lambda: f"gateway-{uuid.uuid4().hex[:12]}")
    _pusher: asyncio.Task[None] | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        registry: Registry | None = None,
        metrics: MetricsRecorder | None = None,
    ) -> Services:
        """Create the clients; connections open lazily, so a dependency down at start-up
        only makes `/health/ready` fail until it is back."""
        store = ResultStore.from_url(
            str(settings.redis_url),
            prefix=settings.redis_prefix,
            ttl_s=settings.result_ttl_s,
            timeout_s=settings.io_timeout_s,
        )
        registry = registry or RayRegistry(
            name=settings.registry_name,
            namespace=settings.registry_namespace,
            ping_interval_s=settings.ping_interval_s,
            ping_timeout_s=settings.ping_timeout_s,
            call_timeout_s=settings.io_timeout_s,
        )
        return cls(
            settings=settings,
            store=store,
            users=UserStore(store.redis, prefix=settings.redis_prefix),
            publisher=Publisher(str(settings.amqp_url), timeout_s=settings.io_timeout_s),
            catalog=ModelCatalog(registry, ttl_s=settings.model_cache_ttl_s),
            registry=registry,
            metrics=metrics or MetricsRecorder(),
        )

    def start_metrics_push(self) -> None:
        """Send this process's metrics to the registry every ping interval."""
        self._pusher = asyncio.get_running_loop().create_task(self._push_forever())

    async def push_metrics(self) -> None:
        await self.registry.report_metrics(self.source_id, self.metrics.snapshot())

    async def _push_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.ping_interval_s)
            try:
                await self.push_metrics()
            except Exception as exc:
                logger.warning("could not report metrics: %s", exc)

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
        await self.publisher.close()
        await self.store.close()
