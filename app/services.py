"""The gateway's long-lived clients, opened in the app's lifespan and shared by all requests."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.catalog import ModelCatalog
from app.core.broker import Publisher
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

    @classmethod
    def open(cls, settings: Settings, registry: Registry | None = None) -> Services:
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
        )

    async def close(self) -> None:
        await self.publisher.close()
        await self.store.close()
