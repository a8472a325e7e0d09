"""`Releaser`: a replica's part of fair share, moving held tasks into the model's queue in turn.

(`app.sharing.fair_share` says how fair share works.) When one of a user's tasks ends, the
replica that ended it moves that user's next held task into the work queue, if their window
has room; every `sweep_s` it does the same for every user with held tasks (a window that grew,
a release cut short by a crash). A move publishes the task to the work queue, waits for the
broker's confirm, counts it in the window, then acknowledges it in the hold queue: a crash in
between leaves it in both, and the copy still held is dropped when its turn comes, since the
task is no longer held.
"""

from __future__ import annotations

import asyncio
import logging

from aio_pika.abc import AbstractChannel, AbstractQueue

from app.core.broker import BROKER_ERRORS, BrokerError, persistent_message, publish_confirmed
from app.core.redis_scripts import StoreError
from app.sharing.fair_share import declare_hold_queue
from app.tasks.store import ResultStore

logger = logging.getLogger(__name__)

DEFAULT_SWEEP_S = 1.0
# What a release may run into: Redis or RabbitMQ failing (the sweep tries again).
RELEASE_ERRORS: tuple[type[BaseException], ...] = (StoreError, *BROKER_ERRORS)


class Releaser:
    """Moves one model's held tasks into its work queue as their owners' windows allow.

    Args:
        model: the model (its work queue has the same name).
        store: where windows and holds are counted.
        window: tasks of one owner the work queue may hold.
        publish_timeout_s: bound on one publish's confirm.
    """

    def __init__(
        self, model: str, store: ResultStore, *, window: int, publish_timeout_s: float
    ) -> None:
        self.model = model
        self.store = store
        self.window = window
        self._timeout_s = publish_timeout_s
        self._channel: AbstractChannel | None = None
        self._queues: dict[str, AbstractQueue] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Tasks held over all owners, as the last sweep found them (autoscaling reads it).
        self.held = 0

    def attach(self, channel: AbstractChannel) -> None:
        self._channel = channel
        self._queues.clear()

    async def release(self, owner: str) -> int:
        """Move `owner`'s held tasks, highest priority first, while their window has room;
        return how many moved."""
        async with self._locks.setdefault(owner, asyncio.Lock()):
            return await self._release(owner)

    async def _release(self, owner: str) -> int:
        if self._channel is None:
            raise BrokerError("attach() a channel before releasing")
        queue = self._queues.get(owner)
        if queue is None:
            queue = self._queues[owner] = await declare_hold_queue(self._channel, self.model, owner)
        moved = 0
        room = await self.store.release_room(self.model, owner, self.window)
        if room == 0:
            return 0  # the window is full: this owner's turn comes as their tasks end
        while (message := await queue.get(no_ack=False, fail=False)) is not None:
            task_id = message.message_id or ""
            if not await self.store.is_held(self.model, owner, task_id):
                # Ended while held (cancelled, expired), or moved already by a release cut
                # short: nothing to run. Such copies are cleared whenever the queue is read.
                await message.ack()
                continue
            if moved >= room:
                await message.nack(requeue=True)  # its turn has not come: back in its place
                break
            await publish_confirmed(
                self._channel,
                self.model,
                persistent_message(message.body, message_id=task_id),
                timeout_s=self._timeout_s,
            )
            await self.store.released(self.model, owner, task_id)
            await message.ack()
            moved += 1
        return moved

    async def sweep(self) -> int:
        """Release for every owner with held tasks; return how many moved."""
        moved = 0
        held = 0
        for owner in await self.store.holders(self.model):
            try:
                moved += await self.release(owner)
                held += (await self.store.share(self.model, owner))[1]
            except RELEASE_ERRORS as exc:
                logger.warning("%s: releasing %s's held tasks failed: %s", self.model, owner, exc)
        self.held = held
        return moved

    async def sweep_forever(self, interval_s: float = DEFAULT_SWEEP_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.sweep()
            except RELEASE_ERRORS as exc:
                logger.warning("%s: fair-share sweep failed: %s", self.model, exc)
