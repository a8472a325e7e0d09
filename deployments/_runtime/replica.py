"""The Ray Serve deployment every model runs in: a consumer, a registry membership, a handle API.

`build_application(ModelClass)` turns an `@model` class into a Serve application. Each replica:
connects to RabbitMQ (bounded retries), declares the model's queues, registers with the
registry (a refused registration fails the replica, and its log says why), then consumes.
On shutdown it stops consuming, lets in-flight tasks finish or go back to the queue, and
logs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import psutil
import ray
from aio_pika.abc import AbstractRobustConnection
from google.protobuf.message import Message
from ray import serve

from app.core.broker import connect
from app.core.logging import configure_logging
from app.core.metrics import BATCH_SIZE, TASKS_IN_FLIGHT, MetricsRecorder
from app.core.metrics import Snapshot as MetricsSnapshot
from app.core.settings import get_settings
from app.inference.cache import ResultCache
from app.inference.outcome import InferOutcome
from app.tasks.store import ResultStore
from deployments._runtime.autoscaling import HELD_METRIC, INFLIGHT_METRIC
from deployments._runtime.cancellation import CancelListener
from deployments._runtime.consumer import TaskConsumer, Webhooks
from deployments._runtime.membership import Membership
from deployments._runtime.spec import effective_spec, model_info, prefetch
from protos.codec import message_from_bytes
from registry.client import RayRegistry
from registry.schemas import InstanceInfo, RegistrationRefused, ReplicaStatus

logger = logging.getLogger(__name__)


# Serve kills a replica `graceful_shutdown_timeout_s` after asking it to stop; drain for less.
GRACEFUL_SHUTDOWN_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 20.0
# How long a replica may stay disconnected from RabbitMQ before it reports itself unhealthy
# (aio-pika reconnects on its own; a short broker restart should not replace replicas).
DISCONNECTED_GRACE_S = 60.0


class ModelReplica:
    """One replica of a model deployment (the class Serve runs; the model is an argument)."""

    async def __init__(  # type: ignore[misc]
        self,
        model_cls: type,
        overrides: dict[str, Any] | None = None,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        configure_logging()
        settings = get_settings()
        self._spec = effective_spec(model_cls, overrides)
        self._started_at = time.time()
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # starts the CPU measurement
        runtime = ray.get_runtime_context()
        self._node = (runtime.get_node_id(), ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        self._refused: str | None = None
        self._connection: AbstractRobustConnection | None = None
        self._disconnected_since: float | None = None
        context = serve.get_replica_context()
        instance = InstanceInfo(
            instance_id=context.replica_id.unique_id,
            actor_name=context.replica_id.to_full_id_str(),
            ping_interval_s=settings.ping_interval_s,
            ping_timeout_s=settings.ping_timeout_s,
        )
        # The model's own constructor may be slow (loading or training): it runs first so a
        # replica registers only once it can answer.
        self._model = model_cls(**(init_kwargs or {}))
        self._store = ResultStore.from_settings(settings)
        self._metrics = MetricsRecorder()
        self._consumer = TaskConsumer(
            self._spec,
            self._model,
            self._store,
            publish_timeout_s=settings.io_timeout_s,
            metrics=self._metrics,
            webhooks=Webhooks(
                queue=settings.webhook_queue, max_attempts=settings.webhook_max_attempts
            ),
            progress_interval_s=settings.progress_interval_s,
            sweep_s=settings.fair_share_sweep_s,
            cache=ResultCache(
                self._store.redis,
                prefix=settings.redis_prefix,
                max_entry_bytes=settings.cache_max_entry_bytes,
            ),
        )
        self._cancels = CancelListener(
            str(settings.redis_url),
            self._store.cancel_channel(self._spec.name),
            self._consumer.cancel,
        )
        self._connection = await connect(
            str(settings.amqp_url),
            attempts=settings.connect_attempts,
            delay_s=settings.connect_retry_delay_s,
        )
        self._connection.close_callbacks.add(self._on_disconnect)
        self._connection.reconnect_callbacks.add(self._on_reconnect)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        await self._consumer.attach(channel, prefetch=prefetch(self._spec, settings.prefetch_count))
        if self._spec.settings.batching:
            batched: Any = self._batched_infer  # Serve's batch wrapper carries the setters
            batched.set_max_batch_size(self._spec.settings.max_batch_size)
            batched.set_batch_wait_timeout_s(self._spec.settings.batch_wait_timeout_s)
        self._membership = Membership(
            RayRegistry.from_settings(settings),
            model_info(
                self._spec, app_name=context.app_name, default_prefetch=settings.prefetch_count
            ),
            instance,
            interval_s=settings.ping_interval_s,
            metrics=self._metrics_snapshot,
            status=self._status,
            on_refused=self._refused_later,
        )
        try:
            await self._membership.join()
        except Exception:
            logger.exception("%s: cannot register; this replica will not start", self._spec.name)
            await self._connection.close()
            await self._store.close()
            raise
        self._cancels.start()
        await self._consumer.start()
        logger.info("%s: replica %s consuming", self._spec.name, instance.instance_id)

    def _on_disconnect(self, *_: Any) -> None:
        self._disconnected_since = self._disconnected_since or time.monotonic()

    def _on_reconnect(self, *_: Any) -> None:
        self._disconnected_since = None

    async def infer(self, payload: bytes) -> InferOutcome:
        """A synchronous call through a Serve handle: the request message's bytes in, the
        outcome (the response's bytes, or what went wrong) out."""
        if self._spec.settings.batching:
            return await self._consumer.answer(payload, call=self._infer_in_batch)
        return await self._consumer.answer(payload)

    async def infer_stream(self, payload: bytes) -> AsyncIterator[InferOutcome]:
        """A synchronous call that streams (a Serve handle with `stream=True`): an outcome per
        chunk as the model yields it; a client that goes away cancels the model's generator."""
        async for outcome in self._consumer.answer_stream(payload):
            yield outcome

    async def _infer_in_batch(self, request: Message) -> Message:
        result: Message | BaseException = await self._batched_infer(request)
        if isinstance(result, BaseException):
            raise result
        return result

    # Serve's own batching for synchronous calls; the sizes are the model's (set at start).
    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def _batched_infer(self, requests: list[Message]) -> list[Message | BaseException]:
        self._metrics.observe(BATCH_SIZE, len(requests), self._spec.name, "infer")
        return list(await self._consumer.run_batch(requests))

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Serve calls this with the deployment's `user_config` at start and whenever
        `serve deploy` changes it: the model's own `reconfigure` gets it, the replica stays."""
        method = getattr(self._model, "reconfigure", None)
        if method is None:
            raise TypeError(
                f"{self._spec.name}: serve_config.yaml gives a user_config, but "
                f"{type(self._model).__name__} has no `reconfigure(self, config)` method"
            )
        method(dict(config))

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

    def _status(self) -> ReplicaStatus:
        """Where this replica runs and what it costs, for the registry (GET /models/{name})."""
        stats = self._consumer.stats
        memory = psutil.virtual_memory()
        return ReplicaStatus(
            node_id=self._node[0],
            node_address=self._node[1],
            pid=self._process.pid,
            state="refused" if self._refused else "running",
            rss_bytes=self._process.memory_info().rss,
            cpu_percent=self._process.cpu_percent(None),
            started_at=self._started_at,
            tasks_succeeded=stats.succeeded,
            tasks_failed=stats.failed,
            tasks_in_flight=stats.in_flight,
            node_memory_total_bytes=memory.total,
            node_memory_available_bytes=memory.available,
        )

    async def _refused_later(self, refusal: RegistrationRefused) -> None:
        """The name is no longer this model's: stop taking its tasks (they are another
        model's messages now) and fail the health check, so Serve replaces the replica."""
        self._refused = str(refusal)
        logger.error("%s: stops consuming: %s", self._spec.name, refusal)
        await self._consumer.stop(drain_timeout_s=DRAIN_TIMEOUT_S)

    async def check_health(self) -> None:
        """Unhealthy when the consumer has been cut off from RabbitMQ for too long, or the
        registry refused this replica's model."""
        if self._refused is not None:
            raise RuntimeError(f"{self._spec.name}: registration refused: {self._refused}")
        if self._connection is None or self._connection.is_closed:
            raise RuntimeError(f"{self._spec.name}: RabbitMQ connection closed")
        since = self._disconnected_since
        if since is not None and time.monotonic() - since > DISCONNECTED_GRACE_S:
            raise RuntimeError(
                f"{self._spec.name}: disconnected from RabbitMQ for {time.monotonic() - since:.0f}s"
            )

    def _metrics_snapshot(self) -> MetricsSnapshot:
        self._metrics.set(TASKS_IN_FLIGHT, float(self._consumer.stats.in_flight), self._spec.name)
        return self._metrics.snapshot()

    def record_autoscaling_stats(self) -> dict[str, float]:
        """What this replica is working on, and the model's held tasks as its last fair-share
        sweep found them, for `QueueBacklogPolicy` (Serve calls this)."""
        releaser = self._consumer.releaser
        return {
            INFLIGHT_METRIC: float(self._consumer.stats.in_flight),
            HELD_METRIC: float(releaser.held if releaser is not None else 0),
        }

    async def __del__(self) -> None:
        # Serve awaits this on scale-down, redeploy and delete.
        try:
            await self._consumer.stop(drain_timeout_s=DRAIN_TIMEOUT_S)
            await self._consumer.close()
            await self._membership.leave()
        finally:
            await self._cancels.close()
            if self._connection is not None:
                await asyncio.shield(self._connection.close())
            await self._store.close()
