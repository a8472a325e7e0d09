"""A task's webhook delivery outcome, kept in its record (`webhook_<name>` fields)."""

from __future__ import annotations

from typing import Any

from app.core.redis_scripts import ScriptBatcher, load_script, store_errors
from app.tasks.records import TaskRecords
from app.tasks.shapes import as_field

RECORD_DELIVERY = load_script(__file__, "record_delivery")


class WebhookState:
    """Args:
    batch: the pipeline the store's script calls go through.
    records: the task records (their key names).
    """

    def __init__(self, batch: ScriptBatcher, records: TaskRecords) -> None:
        self._batch = batch
        self._records = records

    async def update(self, task_id: str, **fields: Any) -> bool:
        """Record a webhook delivery outcome (`webhook_<name>` fields); False if no record."""
        args: list[Any] = []
        for name, value in fields.items():
            args.extend((f"webhook_{name}", "" if value is None else as_field(value)))
        key = self._records.key(task_id)
        with store_errors():
            return bool(await self._batch.call(RECORD_DELIVERY, [key], args))
