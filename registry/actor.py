"""The detached registry actor: `RegistryState` plus the loop that pings every instance.

The decisions (who is missing, who is dropped) are `RegistryState`'s; the Ray calls that
probe instances are `registry.probes`', injected, so this module only schedules them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from app.core.metrics import Snapshot as MetricsSnapshot
from app.core.metrics import SourceTable
from registry.probes import Probes, RayProbes
from registry.schemas import InstanceDetail, InstanceInfo, ModelInfo, ReplicaStatus, Snapshot
from registry.state import RegistryState

logger = logging.getLogger(__name__)


class RegistryActor:
    """Tracks live model instances; run as a named, detached Ray actor (see `client`)."""

    def __init__(
        self, ping_interval_s: float, ping_timeout_s: float, probes: Probes | None = None
    ) -> None:
        self._state = RegistryState(now=time.time())
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._probes = probes or RayProbes()
        self._pinger: asyncio.Task[None] | None = None
        self._metrics = SourceTable()

    def _ensure_pinger(self) -> None:
        # An async actor's loop only runs once a method is called, so the loop starts lazily.
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.get_running_loop().create_task(self._ping_forever())

    async def register(
        self,
        model: ModelInfo,
        instance: InstanceInfo,
        metrics: MetricsSnapshot | None = None,
        status: dict[str, Any] | None = None,
    ) -> bool:
        self._ensure_pinger()
        now = time.time()
        report = ReplicaStatus.from_report(status) if status is not None else None
        added = self._state.register(model, instance, now, report)
        if instance.ping_interval_s > 0:
            self._ping_interval_s = instance.ping_interval_s
        if instance.ping_timeout_s > 0:
            self._ping_timeout_s = instance.ping_timeout_s
        if metrics is not None:
            self._metrics.report(instance.instance_id, metrics, now)
        if added:
            logger.info("registered %s instance %s", model.name, instance.instance_id)
        return added

    async def logout(self, model_name: str, instance_id: str) -> bool:
        self._ensure_pinger()
        removed = self._state.logout(model_name, instance_id)
        self._metrics.retire(instance_id)
        if removed:
            logger.info("logged out %s instance %s", model_name, instance_id)
        return removed

    async def instances(self, model_name: str) -> list[InstanceDetail] | None:
        self._ensure_pinger()
        return self._state.details(model_name)

    async def snapshot(self) -> Snapshot:
        self._ensure_pinger()
        return self._state.snapshot(now=time.time())

    async def report_metrics(self, source: str, metrics: MetricsSnapshot) -> None:
        """Latest metrics of a process that is not a model instance (a gateway replica)."""
        self._ensure_pinger()
        self._metrics.report(source, metrics, time.time())

    async def metrics(self) -> MetricsSnapshot:
        """Every process's metrics merged; totals of departed processes included."""
        self._ensure_pinger()
        return self._metrics.merged()

    async def _ping_forever(self) -> None:
        # Rounds start at a fixed rate (a round's own duration, up to the ping timeout, does
        # not push the next one back): an instance that stops answering is dropped at its
        # second missed round, within two intervals and one ping timeout.
        loop = asyncio.get_running_loop()
        next_round = loop.time() + self._ping_interval_s
        while True:
            await asyncio.sleep(max(0.0, next_round - loop.time()))
            next_round = max(next_round + self._ping_interval_s, loop.time())
            try:
                await self._ping_round()
            except Exception:  # the pinger must outlive any one bad round
                logger.exception("ping round failed")

    async def _ping_round(self) -> None:
        pinged = [(name, info) for name, info in self._state.instances() if info.actor_name]
        results = await asyncio.gather(
            *(self._probes.ping(info.actor_name, self._ping_timeout_s) for _, info in pinged)
        )
        now = time.time()
        for (name, info), result in zip(pinged, results, strict=True):
            if self._state.record_ping(name, info.instance_id, result, now):
                self._metrics.retire(info.instance_id)
                logger.warning("dropped %s instance %s (%s)", name, info.instance_id, result.value)
        # Instances nobody can ping live only as long as they keep re-registering.
        for name, key in self._state.drop_stale(now, max_age_s=3 * self._ping_interval_s):
            self._metrics.retire(key)
            logger.warning("dropped %s instance %s (not seen for 3 intervals)", name, key)
        live = {info.instance_id: info for _, info in self._state.instances()}
        self._metrics.retire_stale(now, max_age_s=3 * self._ping_interval_s, keep=live)
        # A model scaled to zero stays listed only while its Serve application exists.
        dormant = self._state.dormant()
        if dormant:
            apps = await self._probes.serve_applications()
            for model in dormant:
                if apps is not None and model.app_name not in apps:
                    self._state.drop_model(model.name)
                    logger.info("dropped dormant model %s (application gone)", model.name)
