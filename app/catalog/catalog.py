"""The gateway's view of live models: the registry's snapshot, briefly cached, with codecs.

Message classes are rebuilt from the descriptors each model registered, so the gateway parses
and documents a model's messages without ever importing the model's code, and picks up a new
model (or drops a deleted one) without a restart.

A registry that restarts comes back empty and learns its instances again within one ping
interval; one that cannot be reached knows nothing at all. Neither means a model is gone, so
the catalog never turns them into "no such model" (a 404 a client would not retry): it keeps
the models it knew while a new registry is younger than `grace_s`, and serves its last list
for up to `stale_s` while the registry cannot be reached (then 503).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass

from app.core.errors import AppError, ModelNotFound, ModelUnavailable, Unavailable
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
        grace_s: how long models missing from a newly started registry are still served.
        stale_s: how long the last list is served while the registry cannot be reached.
    """

    def __init__(
        self, registry: Registry, *, ttl_s: float, grace_s: float = 30.0, stale_s: float = 60.0
    ) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._grace_s = grace_s
        self._stale_s = stale_s
        self._snapshot: Snapshot | None = None
        self._fetched_at = 0.0
        self._models: dict[str, LiveModel] = {}
        # Rebuilt message classes by fingerprint: a schema is compiled once, not per refresh.
        self._types: dict[str, MessageTypes] = {}
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The models as the catalog serves them (possibly `ttl_s` old, or remembered).

        Raises:
            Unavailable: the registry cannot be reached, and nothing recent is known.
        """
        if self._fresh():
            assert self._snapshot is not None  # noqa: S101 - _fresh checked it
            return self._snapshot
        async with self._lock:
            if self._fresh():
                assert self._snapshot is not None  # noqa: S101
                return self._snapshot
            try:
                snapshot = await self._registry.snapshot()
            except RegistryUnavailable as exc:
                last = self._snapshot
                if last is not None and time.monotonic() - self._fetched_at < self._stale_s:
                    logger.warning("registry unavailable (%s); serving the last model list", exc)
                    return last
                raise Unavailable("the model registry is unavailable") from exc
            return self._apply(snapshot)

    def _fresh(self) -> bool:
        return self._snapshot is not None and time.monotonic() - self._fetched_at < self._ttl_s

    def _apply(self, snapshot: Snapshot) -> Snapshot:
        previous = self._snapshot
        if (
            previous is not None
            and snapshot.incarnation != previous.incarnation
            and snapshot.age_s < self._grace_s
        ):
            snapshot = self._with_remembered(snapshot, previous)
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
        return snapshot

    def _with_remembered(self, young: Snapshot, previous: Snapshot) -> Snapshot:
        """A young registry's snapshot plus the models it has not heard from yet.

        The result keeps the previous incarnation, so every refresh within the grace period
        compares against what was known before the restart.
        """
        known = {view.name for view in young.models}
        remembered = tuple(view for view in previous.models if view.name not in known)
        if remembered:
            logger.info(
                "registry restarted %.1fs ago; still serving %s until they re-register",
                young.age_s,
                ", ".join(view.name for view in remembered),
            )
        return dataclasses.replace(
            young,
            models=tuple(sorted((*young.models, *remembered), key=lambda v: v.name)),
            incarnation=previous.incarnation,
            # Any change in what is listed must change the version (the OpenAPI cache key).
            version=hash((previous.version, young.version, previous.incarnation)) & 0x7FFFFFFF,
        )

    async def live(self) -> list[LiveModel]:
        await self.snapshot()
        return list(self._models.values())

    async def streams(self, name: str) -> bool:
        """Whether the model `name` streams its output; False for a model not known now
        (a task's stream then tells by the chunks its record counts)."""
        try:
            await self.snapshot()
        except AppError:
            return False
        model = self._models.get(name)
        return model is not None and model.view.streams

    async def get(self, name: str) -> LiveModel:
        """The live model `name`.

        Raises:
            ModelNotFound: no model of that name is registered.
            ModelUnavailable: it is registered but has no live instance.
            Unavailable: the registry cannot be reached, and nothing recent is known.
        """
        await self.snapshot()
        model = self._models.get(name)
        if model is None:
            raise ModelNotFound(f"no live model named {name!r}")
        if model.view.instances == 0 and not model.view.dormant:
            raise ModelUnavailable(f"model {name!r} has no live instance")
        return model
