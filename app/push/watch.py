"""What a waiter holds: a `Watch` of one task (its latest record, its final state, each change),
the per-task `Topic` its watches share, and a streaming model's `Chunk` as notified."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from app.core.lifecycle import TaskRecord

if TYPE_CHECKING:
    from app.push.notifications import TaskNotifications

# How a chunk notification starts (`ResultStore.add_chunk` writes it; state changes never
# have this as their first key).
CHUNK_PREFIX = b'{"chunk":'
_CHUNK_DATA = b',"data":'


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A streaming model's output chunk: its number (from 1) and its JSON text."""

    number: int
    json: str

    @classmethod
    def parse(cls, data: bytes) -> Chunk:
        """Cut a notification `{"chunk":N,"data":<json>}` apart without decoding the JSON."""
        split = data.index(_CHUNK_DATA)
        return cls(
            int(data[len(CHUNK_PREFIX) : split]), data[split + len(_CHUNK_DATA) : -1].decode()
        )


class Topic:
    """The waiters of one task in this process, and what they know of it."""

    def __init__(self, task_id: str, channel: str) -> None:
        self.task_id = task_id
        self.channel = channel
        self.record: TaskRecord | None = None
        self.watches: set[Watch] = set()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.subscribed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.final: asyncio.Future[TaskRecord] = asyncio.get_running_loop().create_future()
        self.notified_seq = 0
        self.reload: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None


class Watch:
    """One waiter's view of a task: its latest record, its final state, every change."""

    def __init__(self, hub: TaskNotifications, topic: Topic, *, chunks: bool = False) -> None:
        self._hub = hub
        self._topic = topic
        self.chunks = chunks
        self._changes: asyncio.Queue[TaskRecord | Chunk] = asyncio.Queue()

    @property
    def record(self) -> TaskRecord:
        assert self._topic.record is not None  # noqa: S101 - set before a Watch is handed out
        return self._topic.record

    def _push(self, change: TaskRecord | Chunk) -> None:
        self._changes.put_nowait(change)

    async def final(self, timeout_s: float) -> TaskRecord:
        """The final record, or at `timeout_s` the record as Redis holds it then."""
        if self.record.status.is_final:
            return self.record
        try:
            return await asyncio.wait_for(asyncio.shield(self._topic.final), timeout_s)
        except TimeoutError:
            return await self._hub.reread(self._topic)

    async def next_change(self, timeout_s: float) -> TaskRecord | Chunk | None:
        """The next record (or chunk, for a watch that asked for them) this waiter has not
        seen, in order; None after `timeout_s`."""
        try:
            return await asyncio.wait_for(self._changes.get(), timeout_s)
        except TimeoutError:
            return None
