"""`ModelCaller`: synchronous calls of a model through a Ray Serve handle to its own replicas.

The replicas that consume the model's queue also answer handle calls (`ModelReplica.infer`):
there is no second copy of the model. Identical requests of a model with a cache are answered
from it, and its answers fill it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from app.core.errors import ModelUnavailable
from app.core.metrics import CACHE_LOOKUPS, INFER_DURATION, INFER_REQUESTS, MetricsRecorder
from app.core.redis_scripts import StoreError
from app.inference.cache import CachedResult, ResultCache
from app.inference.outcome import InferOutcome, Outcome
from registry.schemas import ModelView

logger = logging.getLogger(__name__)

# Beyond a model's own timeout_s, how long the gateway gives the replica to say so.
TIMEOUT_MARGIN_S = 2.0


class Replicas(Protocol):
    """How a request reaches a model's replicas (Serve handles; tests use a local one)."""

    async def infer(self, view: ModelView, payload: bytes, timeout_s: float) -> InferOutcome: ...

    def stream(self, view: ModelView, payload: bytes) -> AsyncIterator[InferOutcome]:
        """An outcome per chunk as the model yields it, the last one an error if it failed;
        closing the iterator stops the model's generator."""
        ...


class ServeReplicas:
    """Serve deployment handles, one per model deployment, kept."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, str, str], Any] = {}

    def _handle(self, view: ModelView, method: str = "infer") -> Any:
        key = (view.app_name, view.deployment or view.name, method)
        handle = self._handles.get(key)
        if handle is None:
            from ray import serve

            handle = serve.get_deployment_handle(key[1], app_name=key[0]).options(
                method_name=method, stream=method == "infer_stream"
            )
            self._handles[key] = handle
        return handle

    async def stream(self, view: ModelView, payload: bytes) -> AsyncIterator[InferOutcome]:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        responses = self._handle(view, "infer_stream").remote(payload)
        try:
            async for outcome in responses:
                yield outcome
        except (RayActorError, BackPressureError, DeploymentUnavailableError) as exc:
            self._handles.pop((view.app_name, view.deployment or view.name, "infer_stream"), None)
            raise ModelUnavailable(f"model {view.name!r} could not take the call") from exc
        finally:
            responses.cancel()  # the client went away: the replica's generator stops

    async def infer(self, view: ModelView, payload: bytes, timeout_s: float) -> InferOutcome:
        from ray.exceptions import RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        response = self._handle(view).remote(payload)
        try:
            outcome: InferOutcome = await asyncio.wait_for(response, timeout_s)
        except TimeoutError:
            response.cancel()
            return InferOutcome(Outcome.TIMEOUT, error=f"no answer within {timeout_s:g}s")
        except (RayActorError, BackPressureError, DeploymentUnavailableError) as exc:
            self._handles.pop((view.app_name, view.deployment or view.name, "infer"), None)
            raise ModelUnavailable(f"model {view.name!r} could not take the call") from exc
        return outcome


class ModelCaller:
    """Calls models synchronously, through the cache when the model has one."""

    def __init__(
        self,
        replicas: Replicas,
        cache: ResultCache,
        metrics: MetricsRecorder,
        *,
        default_timeout_s: float,
    ) -> None:
        self._replicas = replicas
        self._cache = cache
        self._metrics = metrics
        self._default_timeout_s = default_timeout_s

    async def infer(self, view: ModelView, payload: bytes) -> InferOutcome:
        """The model's answer to one request (its deterministic protobuf serialization)."""
        started = time.perf_counter()
        outcome = await self._cached(view, payload)
        if outcome is None:
            timeout_s = (
                view.timeout_s + TIMEOUT_MARGIN_S if view.timeout_s else self._default_timeout_s
            )
            outcome = await self._replicas.infer(view, payload, timeout_s)
        self._metrics.inc(INFER_REQUESTS, view.name, outcome.outcome.value)
        self._metrics.observe(INFER_DURATION, time.perf_counter() - started, view.name)
        return outcome

    async def stream(self, view: ModelView, payload: bytes) -> AsyncIterator[InferOutcome]:
        """The model's answer to one request chunk by chunk (the whole answer as one chunk
        from a model that does not stream); never from the cache."""
        started = time.perf_counter()
        outcome = Outcome.OK
        try:
            async for chunk in self._replicas.stream(view, payload):
                outcome = chunk.outcome
                yield chunk
        finally:
            self._metrics.inc(INFER_REQUESTS, view.name, outcome.value)
            self._metrics.observe(INFER_DURATION, time.perf_counter() - started, view.name)

    async def _cached(self, view: ModelView, payload: bytes) -> InferOutcome | None:
        if not view.cache_ttl_s:
            return None
        key = self._cache.key(view.name, view.fingerprint, view.version, payload)
        try:
            [hit] = await self._cache.get_many([key])
        except StoreError as exc:
            logger.warning("%s: cache unavailable, calling the model: %s", view.name, exc)
            return None
        self._metrics.inc(CACHE_LOOKUPS, view.name, "hit" if hit else "miss")
        return InferOutcome(Outcome.OK, response=hit.result) if hit else None

    def key(self, view: ModelView, payload: bytes) -> str:
        return self._cache.key(view.name, view.fingerprint, view.version, payload)

    async def lookup(self, view: ModelView, payloads: list[bytes]) -> list[CachedResult | None]:
        """Cached answers for a submit's payloads (all None for a model without a cache)."""
        if not view.cache_ttl_s:
            return [None] * len(payloads)
        try:
            hits = await self._cache.get_many([self.key(view, p) for p in payloads])
        except StoreError as exc:
            logger.warning("%s: cache unavailable, queuing: %s", view.name, exc)
            return [None] * len(payloads)
        for hit in hits:
            self._metrics.inc(CACHE_LOOKUPS, view.name, "hit" if hit else "miss")
        return hits
