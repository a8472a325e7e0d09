"""The gateway's view of live models: the registry's snapshot, briefly cached, with codecs.

Message classes are rebuilt from the descriptors each model registered, so the gateway parses
and documents a model's messages without ever importing the model's code, and picks up a new
model (or drops a deleted one) without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from app.core.errors import ModelNotFound, ModelUnavailable, Unavailable
from protos.descriptors import MessageTypes
from registry.client import Registry, RegistryUnavailable
from registry.schemas import ModelView, Snapshot

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveModel:
    view: ModelView
    types: MessageTypes


class ModelCatalog:
    """Live models by name, refreshed from the registry at most every `ttl_s` seconds.

    Args:
        registry: where the truth lives.
        ttl_s: how stale the cached list may be (0 asks the registry every time).
    """

    def __init__(self, registry: Registry, *, ttl_s: float) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._snapshot: Snapshot | None = None
        self._fetched_at = 0.0
        self._models: dict[str, LiveModel] = {}
        # Rebuilt message classes by fingerprint: a schema is compiled once, not per refresh.
        self._types: dict[str, MessageTypes] = {}
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The registry's current snapshot (possibly `ttl_s` old).

        Raises:
            Unavailable: the registry cannot be reached and nothing is cached.
        """
        if self._snapshot is not None and time.monotonic() - self._fetched_at < self._ttl_s:
            return self._snapshot
        async with self._lock:
            if self._snapshot is not None and time.monotonic() - self._fetched_at < self._ttl_s:
                return self._snapshot
            try:
                snapshot = await self._registry.snapshot()
            except RegistryUnavailable as exc:
                logger.warning("registry unavailable: %s", exc)
                raise Unavailable("the model registry is unavailable") from exc
            self._apply(snapshot)
            return snapshot

    def _apply(self, snapshot: Snapshot) -> None:
        models: dict[str, LiveModel] = {}
        for view in snapshot.models:
            types = self._types.get(view.fingerprint)
            if types is None:
                try:
                    types = MessageTypes.from_descriptor_set(
                        view.descriptor_set, view.request_type, view.response_type
                    )
                except Exception:
                    logger.exception("model %s: unusable descriptors; skipped", view.name)
                    continue
                self._types[view.fingerprint] = types
            models[view.name] = LiveModel(view=view, types=types)
        live_fingerprints = {m.view.fingerprint for m in models.values()}
        self._types = {k: v for k, v in self._types.items() if k in live_fingerprints}
        self._models = models
        self._snapshot = snapshot
        self._fetched_at = time.monotonic()

    async def live(self) -> list[LiveModel]:
        await self.snapshot()
        return list(self._models.values())

    async def get(self, name: str) -> LiveModel:
        """The live model `name`.

        Raises:
            ModelNotFound: no model of that name is registered.
            ModelUnavailable: it is registered but has no live instance.
        """
        await self.snapshot()
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"no live model named {name!r}")
        if model.view.instances == 0 and not model.view.dormant:
            raise ModelUnavailable(f"model {name!r} has no live instance")
        return model
