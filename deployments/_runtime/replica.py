"""The Ray Serve deployment every model runs in: a consumer, a registry membership, a handle API.

`build_application(ModelClass)` turns an `@model` class into a Serve application. Each replica:
connects to RabbitMQ (bounded retries), declares the model's queues, registers with the
registry (a refused registration fails the replica, and its log says why), then consumes.
On shutdown it stops consuming, lets in-flight tasks finish or go back to the queue, and
logs out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from google.protobuf.message import Message
from ray import serve
from ray.serve import Application

from app.core.broker import connect
from app.core.logging import configure_logging
from app.core.settings import get_settings
from app.core.store import ResultStore
from deployments._runtime.consumer import TaskConsumer
from deployments._runtime.membership import Membership
from deployments.sdk import ModelSpec, check_name, spec_of
from protos.codec import message_from_bytes
from protos.descriptors import descriptor_set, fingerprint
from registry.client import RayRegistry
from registry.schemas import InstanceInfo, ModelInfo

logger = logging.getLogger(__name__)

# Serve kills a replica `graceful_shutdown_timeout_s` after asking it to stop; drain for less.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 20.0
# How long a replica may stay disconnected from RabbitMQ before it reports itself unhealthy
# (aio-pika reconnects on its own; a short broker restart should not replace replicas).
DISCONNECTED_GRACE_S = 60.0


def model_info(spec: ModelSpec) -> ModelInfo:
    """What a replica of `spec` tells the registry about its model."""
    return ModelInfo(
        name=spec.name,
        request_type=spec.request.DESCRIPTOR.full_name,
        response_type=spec.response.DESCRIPTOR.full_name,
        descriptor_set=descriptor_set(spec.request, spec.response),
        fingerprint=fingerprint(spec.request, spec.response),
        description=spec.description,
    )


class ModelReplica:
    """One replica of a model deployment (the class Serve runs; the model is an argument)."""

    async def __init__(self, model_cls: type, model_name: str | None = None) -> None:  # type: ignore[misc]
        configure_logging()
        settings = get_settings()
        self._spec = spec_of(model_cls)
        if model_name is not None:
            self._spec = dataclasses.replace(self._spec, name=model_name)
        self._connection: AbstractRobustConnection | None = None
        self._disconnected_since: float | None = None
        context = serve.get_replica_context()
        instance = InstanceInfo(
            instance_id=context.replica_id.unique_id,
            actor_name=context.replica_id.to_full_id_str(),
        )
        # The model's own constructor may be slow (loading or training): it runs first so a
        # replica registers only once it can answer.
        self._model = model_cls()
        self._store = ResultStore.from_url(
            str(settings.redis_url),
            prefix=settings.redis_prefix,
            ttl_s=settings.result_ttl_s,
            timeout_s=settings.io_timeout_s,
        )
        self._consumer = TaskConsumer(
            self._spec, self._model, self._store, publish_timeout_s=settings.io_timeout_s
        )
        self._connection = await connect(
            str(settings.amqp_url),
            attempts=settings.connect_attempts,
            delay_s=settings.connect_retry_delay_s,
        )
        self._connection.close_callbacks.add(self._on_disconnect)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._consumer.attach(channel, prefetch=settings.prefetch_count)
        self._membership = Membership(
            RayRegistry(
                name=settings.registry_name,
                namespace=settings.registry_namespace,
                ping_interval_s=settings.ping_interval_s,
                ping_timeout_s=settings.ping_timeout_s,
                call_timeout_s=settings.io_timeout_s,
            ),
            model_info(self._spec),
            instance,
            interval_s=settings.ping_interval_s,
        )
        try:
            await self._membership.join()
        except Exception:
            logger.exception("%s: cannot register; this replica will not start", self._spec.name)
            await self._connection.close()
            await self._store.close()
            raise
        await self._consumer.start()
        logger.info("%s: replica %s consuming", self._spec.name, instance.instance_id)

    def _on_disconnect(self, *_: Any) -> None:
        self._disconnected_since = self._disconnected_since or time.monotonic()

    def _on_reconnect(self, *_: Any) -> None:
        self._disconnected_since = None

    async def __call__(self, request: Message | bytes) -> Message:
        """Run the model directly (a Serve handle call): a request message or its bytes in,
        the response message out."""
        if isinstance(request, bytes | bytearray):
            request = message_from_bytes(bytes(request), self._spec.request)
        if not isinstance(request, self._spec.request):
            raise TypeError(
                f"{self._spec.name} takes {self._spec.request.DESCRIPTOR.full_name}, "
                f"got {type(request).__name__}"
            )
        response: Message = await self._model.process_request(request)
        return response

    async def check_health(self) -> None:
        """Unhealthy when the consumer has been cut off from RabbitMQ for too long."""
        if self._connection is None or self._connection.is_closed:
            raise RuntimeError(f"{self._spec.name}: RabbitMQ connection closed")
        since = self._disconnected_since
        if since is not None and time.monotonic() - since > DISCONNECTED_GRACE_S:
            raise RuntimeError(
                f"{self._spec.name}: disconnected from RabbitMQ for {time.monotonic() - since:.0f}s"
            )

    def consumer_stats(self) -> dict[str, int]:
        """The consumer's counters (for tests and operators)."""
        return dict(vars(self._consumer.stats))

    async def __del__(self) -> None:
        # Serve awaits this on scale-down, redeploy and delete.
        try:
            await self._consumer.stop(drain_timeout_s=DRAIN_TIMEOUT_S)
            await self._membership.leave()
        finally:
            if self._connection is not None:
                await asyncio.shield(self._connection.close())
            await self._store.close()


def build_application(
    model_cls: type, *, model_name: str | None = None, **deployment_options: Any
) -> Application:
    """The Serve application of an `@model` class.

    Args:
        model_cls: a class decorated with `deployments.sdk.model`.
        model_name: serve the class under another model name (and queue) than its own, e.g.
            to run one class twice with different settings.
        **deployment_options: options for `serve.deployment` overriding the model's defaults;
            `serve_config.yaml` can override them again per environment.
    """
    spec = spec_of(model_cls)
    if model_name is not None:
        check_name(model_name)
    options: dict[str, Any] = {
        "name": model_name or spec.name,
        "num_replicas": max(1, spec.min_replicas),
        "ray_actor_options": {"num_cpus": spec.num_cpus, **spec.extra_ray_actor_options},
        "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_TIMEOUT_S,
        "health_check_period_s": 10,
    }
    options.update(deployment_options)
    deployment = serve.deployment(ModelReplica).options(**options)  # type: ignore[attr-defined]
    application: Application = deployment.bind(model_cls, model_name)
    return application
