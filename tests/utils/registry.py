"""An in-process `Registry` over the real `RegistryState`, for gateway tests without Ray."""

from __future__ import annotations

import time

from app.core.metrics import Snapshot as MetricsSnapshot
from app.core.metrics import SourceTable
from registry.schemas import InstanceDetail, InstanceInfo, ModelInfo, ReplicaStatus, Snapshot
from registry.state import RegistryState


class LocalRegistry:
    def __init__(self) -> None:
        self.state = RegistryState(now=time.time())
        self.sources = SourceTable()

    async def register(
        self,
        model: ModelInfo,
        instance: InstanceInfo,
        metrics: MetricsSnapshot | None = None,
        status: ReplicaStatus | None = None,
    ) -> bool:
        if metrics is not None:
            self.sources.report(instance.instance_id, metrics, time.time())
        return self.state.register(model, instance, time.time(), status)

    async def instances(self, model_name: str) -> list[InstanceDetail] | None:
        return self.state.details(model_name)

    async def logout(self, model_name: str, instance_id: str) -> bool:
        self.sources.retire(instance_id)
        return self.state.logout(model_name, instance_id)

    async def report_metrics(self, source: str, metrics: MetricsSnapshot) -> None:
        self.sources.report(source, metrics, time.time())

    async def metrics(self) -> MetricsSnapshot:
        return self.sources.merged()

    async def snapshot(self) -> Snapshot:
        return self.state.snapshot(now=time.time())
