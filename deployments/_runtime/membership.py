"""Keeps one model instance registered: join on start, re-register every interval, leave on stop.

Re-registering on every interval (an idempotent upsert) is also how instances heal a registry
that was restarted and lost its state: within one interval it knows them all again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from app.core.metrics import Snapshot as MetricsSnapshot
from registry.client import Registry, RegistryUnavailable
from registry.schemas import InstanceInfo, ModelInfo, RegistrationRefused, ReplicaStatus

logger = logging.getLogger(__name__)


class Membership:
    """One instance's registration with the registry.

    Args:
        registry: the registry client.
        model: what this instance serves.
        instance: who this instance is.
        interval_s: how often to re-register.
        metrics: returns this instance's metrics, sent along with every registration.
        status: returns this instance's status (node, memory, counts), sent likewise.
        on_refused: called when a later registration is refused (another model took the
            name with other message types while the registry restarted): the instance must
            stop serving a name that is no longer its own.
    """

    def __init__(
        self,
        registry: Registry,
        model: ModelInfo,
        instance: InstanceInfo,
        interval_s: float,
        metrics: Callable[[], MetricsSnapshot] | None = None,
        status: Callable[[], ReplicaStatus] | None = None,
        on_refused: Callable[[RegistrationRefused], Awaitable[None]] | None = None,
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._status = status
        self._on_refused = on_refused
        self.model = model
        self.instance = instance
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def join(self) -> None:
        """Register, then keep registering in the background.

        Raises:
            RegistrationRefused: the model name is taken by other message types.
            RegistryUnavailable: the registry could not be reached.
        """
        await self._register()
        self._task = asyncio.get_running_loop().create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                if await self._register():
                    logger.warning(
                        "%s: registry had lost instance %s; registered again",
                        self.model.name,
                        self.instance.instance_id,
                    )
            except RegistrationRefused as exc:
                logger.error("%s: registration refused: %s", self.model.name, exc)
                if self._on_refused is not None:
                    await self._on_refused(exc)
                    return
            except RegistryUnavailable as exc:
                logger.warning("%s: registry unavailable: %s", self.model.name, exc)
            except Exception:
                logger.exception("%s: re-registration failed", self.model.name)

    async def _register(self) -> bool:
        metrics = self._metrics() if self._metrics is not None else None
        status = self._status() if self._status is not None else None
        return await self._registry.register(self.model, self.instance, metrics, status)

    async def leave(self, timeout_s: float = 2.0) -> None:
        """Stop re-registering and log out (best effort: the registry's pings catch a miss).

        The last metrics go along first, so nothing counted since the last interval is lost.
        """
        if self._task is not None:
            self._task.cancel()
            self._task = None
        try:
            async with asyncio.timeout(timeout_s):
                if self._metrics is not None:
                    await self._register()
                await self._registry.logout(self.model.name, self.instance.instance_id)
        except Exception as exc:
            logger.warning("%s: logout failed (pings will drop it): %s", self.model.name, exc)
