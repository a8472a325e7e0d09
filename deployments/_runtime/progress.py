"""`ProgressWriter`: a running task's progress reports, written to its record at a bounded rate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from app.core.redis_scripts import StoreError
from app.tasks.store import ResultStore

logger = logging.getLogger(__name__)


class ProgressWriter:
    """Writes one task's reports, at most one per `interval_s`; the latest report always lands.

    Progress is advisory: a report that cannot be written is logged, never raised into the
    model.
    """

    def __init__(self, store: ResultStore, task_id: str, *, interval_s: float) -> None:
        self._store = store
        self._task_id = task_id
        self._interval_s = interval_s
        self._latest: tuple[float, str] | None = None
        self._last_write = -float("inf")
        self._scheduled: asyncio.Task[None] | None = None

    async def __call__(self, fraction: float, message: str) -> None:
        self._latest = (fraction, message)
        if self._scheduled is not None and not self._scheduled.done():
            return  # the scheduled write will take this report
        wait = self._last_write + self._interval_s - time.monotonic()
        if wait <= 0:
            await self._write()
        else:
            self._scheduled = asyncio.get_running_loop().create_task(self._write_later(wait))

    async def _write_later(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        await self._write()

    async def _write(self) -> None:
        if self._latest is None:
            return
        fraction, message = self._latest
        self._latest = None
        self._last_write = time.monotonic()
        try:
            await self._store.progress(self._task_id, fraction=fraction, message=message)
        except StoreError as exc:
            logger.warning("task %s: progress not recorded: %s", self._task_id, exc)

    async def close(self) -> None:
        """Drop a report still waiting for its slot (the task is over)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduled
