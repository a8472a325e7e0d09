"""Every Ray call the platform makes about the registry, in one thin module.

Components reach the registry through `RayRegistry`, which finds the detached actor by name
(creating it on first use, so whichever component starts first brings it up) and re-acquires
it once when the actor was restarted or replaced.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from app.core.metrics import Snapshot as MetricsSnapshot
from registry.schemas import InstanceDetail, InstanceInfo, ModelInfo, ReplicaStatus, Snapshot

if TYPE_CHECKING:
    from app.core.settings import Settings

logger = logging.getLogger(__name__)


class Registry(Protocol):
    """What components need from the registry (the gateway's tests use an in-process one)."""

    async def register(
        self,
        model: ModelInfo,
        instance: InstanceInfo,
        metrics: MetricsSnapshot | None = None,
        status: ReplicaStatus | None = None,
    ) -> bool: ...

    async def instances(self, model_name: str) -> list[InstanceDetail] | None: ...

    async def logout(self, model_name: str, instance_id: str) -> bool: ...

    async def snapshot(self) -> Snapshot: ...

    async def report_metrics(self, source: str, metrics: MetricsSnapshot) -> None: ...

    async def metrics(self) -> MetricsSnapshot: ...


class RegistryUnavailable(RuntimeError):
    """The registry actor could not be reached in time."""


def get_or_create_registry(
    *, name: str, namespace: str, ping_interval_s: float, ping_timeout_s: float
) -> Any:
    """Return the handle of the detached registry actor, creating it if it does not exist.

    Args:
        name: the actor's name (settings.registry_name).
        namespace: an explicit namespace, so every job finds the same actor.
        ping_interval_s: how often the registry pings instances (used only on creation).
        ping_timeout_s: how long one ping may take (used only on creation).

    Returns:
        A Ray actor handle of `registry.actor.RegistryActor`.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from registry.actor import RegistryActor

    actor_cls = ray.remote(RegistryActor)
    return actor_cls.options(
        name=name,
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        # Restarted (empty) after a crash; instances re-register within one interval.
        max_restarts=-1,
        max_task_retries=-1,
        num_cpus=0,
        # On the creator's node (the gateway's, on the head) rather than on a model worker
        # that autoscaling may remove; soft, so a restart after that node's loss goes anywhere.
        scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=True
        ),
    ).remote(ping_interval_s, ping_timeout_s)


class RayRegistry:
    """`Registry` over the detached actor.

    Args:
        name: actor name; namespace: actor namespace.
        ping_interval_s, ping_timeout_s: passed on when this client creates the actor.
        call_timeout_s: bound on every call, so a stuck registry cannot stall a caller.
    """

    def __init__(
        self,
        *,
        name: str,
        namespace: str,
        ping_interval_s: float,
        ping_timeout_s: float,
        call_timeout_s: float = 5.0,
    ) -> None:
        self._name = name
        self._namespace = namespace
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._call_timeout_s = call_timeout_s
        self._handle: Any = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RayRegistry:
        """The registry these settings name, with their ping cadence and call bound."""
        return cls(
            name=settings.registry_name,
            namespace=settings.registry_namespace,
            ping_interval_s=settings.ping_interval_s,
            ping_timeout_s=settings.ping_timeout_s,
            call_timeout_s=settings.io_timeout_s,
        )

    def _actor(self) -> Any:
        if self._handle is None:
            self._handle = get_or_create_registry(
                name=self._name,
                namespace=self._namespace,
                ping_interval_s=self._ping_interval_s,
                ping_timeout_s=self._ping_timeout_s,
            )
        return self._handle

    async def _call(self, method: str, *args: Any) -> Any:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

        for attempt in (1, 2):
            try:
                ref = getattr(self._actor(), method).remote(*args)
                return await asyncio.wait_for(ref, timeout=self._call_timeout_s)
            except (ActorDiedError, ActorUnavailableError, RayActorError) as exc:
                # Replaced or restarting: look it up again (or create it) once.
                self._handle = None
                if attempt == 2:
                    raise RegistryUnavailable(f"registry actor unavailable: {exc}") from exc
            except TimeoutError as exc:
                raise RegistryUnavailable(
                    f"registry did not answer {method} within {self._call_timeout_s}s"
                ) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def register(
        self,
        model: ModelInfo,
        instance: InstanceInfo,
        metrics: MetricsSnapshot | None = None,
        status: ReplicaStatus | None = None,
    ) -> bool:
        """Register (or refresh) an instance, with its latest metrics and status.

        Raises:
            RegistrationRefused: the name is taken by other message types.
            RegistryUnavailable: the registry did not answer.
        """
        # The status travels as a plain dict: a registry started by an older release (it is
        # detached and outlives deploys) can still read it, or refuses the argument itself.
        report = dataclasses.asdict(status) if status is not None else None
        try:
            return bool(await self._call("register", model, instance, metrics, report))
        except TypeError:
            logger.warning("the registry predates replica status reports; restart it to see them")
            return bool(await self._call("register", model, instance, metrics))

    async def instances(self, model_name: str) -> list[InstanceDetail] | None:
        """The model's live instances with their latest status (None: unknown model, or a
        registry of an older release that cannot tell)."""
        try:
            details: list[InstanceDetail] | None = await self._call("instances", model_name)
        except AttributeError:
            return None
        return details

    async def logout(self, model_name: str, instance_id: str) -> bool:
        """Remove an instance; False when the registry did not know it."""
        return bool(await self._call("logout", model_name, instance_id))

    async def snapshot(self) -> Snapshot:
        """The live models with their descriptors."""
        snapshot: Snapshot = await self._call("snapshot")
        return snapshot

    async def report_metrics(self, source: str, metrics: MetricsSnapshot) -> None:
        """Send the metrics of a process that is not a model instance."""
        await self._call("report_metrics", source, metrics)

    async def metrics(self) -> MetricsSnapshot:
        """All processes' metrics, merged."""
        merged: MetricsSnapshot = await self._call("metrics")
        return merged


async def report_metrics_forever(
    registry: Registry,
    source: str,
    snapshot: Callable[[], MetricsSnapshot],
    interval_s: float,
) -> None:
    """Send a process's metrics to the registry every `interval_s` (a gateway or webhook
    replica: model instances send theirs with their registration)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await registry.report_metrics(source, snapshot())
        except Exception as exc:
            logger.warning("could not report metrics: %s", exc)
