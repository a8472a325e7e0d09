"""An in-process `Registry` over the real `RegistryState`, for gateway tests without Ray."""

from __future__ import annotations

import time

from registry.schemas import InstanceInfo, ModelInfo, Snapshot
from registry.state import RegistryState


class LocalRegistry:
    def __init__(self) -> None:
        self.state = RegistryState()

    async def register(self, model: ModelInfo, instance: InstanceInfo) -> bool:
        return self.state.register(model, instance, time.time())

    async def logout(self, model_name: str, instance_id: str) -> bool:
        return self.state.logout(model_name, instance_id)

    async def snapshot(self) -> Snapshot:
        return self.state.snapshot()
