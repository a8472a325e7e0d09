"""Fair share inside a model's queue: what the gateway, the store and the replicas agree on.

One user's backlog must not delay another user of the same model. Each user has a *window* of
the model's work queue: up to `window` of their tasks are in it (queued, running, or waiting
for a retry) at once. A task submitted while its owner's window is full (or while the owner
already has tasks waiting) goes to the owner's *hold queue* `<model>.hold.<owner>` instead, a
durable RabbitMQ priority queue. Each time one of the owner's tasks ends, a replica moves the
owner's next held task (highest priority first) into the work queue; a periodic sweep does
the same for windows that have room for any other reason. So the work queue interleaves users
in turn, a newcomer's tasks wait behind at most one window of each other user's, and within
one user's held work a higher priority runs first.

Redis tracks each window and hold as sorted sets of task ids (score: creation time), changed
only inside Redis scripts together with the task's state, so the counts are exact:

    <prefix>:fair:<model>:released:<owner>   the owner's tasks in the work queue or running
    <prefix>:fair:<model>:held:<owner>       the owner's tasks in their hold queue
    <prefix>:fair:<model>:holders            owners with held tasks (for the sweep)

Their sum is also the owner's count of tasks queued or running, which the quota on it reads.
Nothing accepted is lost: hold queues are durable and their messages persistent, a release
publishes (confirmed) before it acknowledges, and a release cut short is redone (a task
released twice is run once: the second copy finds its task no longer held and is dropped).
"""

from __future__ import annotations

from enum import StrEnum

from aio_pika.abc import AbstractChannel, AbstractQueue
from redis.asyncio import Redis

from app.core.redis_scripts import ScriptBatcher, load_script, store_errors

# The hold queues' highest AMQP priority (one per `Priority`).
HOLD_MAX_PRIORITY = 2
# The window when a model registered none (an older replica).
DEFAULT_WINDOW = 64


class Priority(StrEnum):
    """How a user orders their own queued work; an admin sets the highest each user may ask."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"

    @property
    def level(self) -> int:
        """The AMQP priority of a held task (0..HOLD_MAX_PRIORITY)."""
        return PRIORITY_LEVELS[self]

    @classmethod
    def of_level(cls, level: int) -> Priority:
        return next(p for p, n in PRIORITY_LEVELS.items() if n == level)


PRIORITY_LEVELS = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2}


class FairShareKeys:
    """Names of the fair-share sets of one platform prefix (their Lua twin:
    `lua/includes/fair_keys.lua`)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def released(self, model: str, owner: str) -> str:
        return f"{self.prefix}:fair:{model}:released:{owner}"

    def held(self, model: str, owner: str) -> str:
        return f"{self.prefix}:fair:{model}:held:{owner}"

    def holders(self, model: str) -> str:
        return f"{self.prefix}:fair:{model}:holders"


def hold_queue(model: str, owner: str) -> str:
    """The RabbitMQ queue holding `owner`'s tasks of `model` beyond their window."""
    return f"{model}.hold.{owner}"


async def declare_hold_queue(channel: AbstractChannel, model: str, owner: str) -> AbstractQueue:
    """Declare the owner's hold queue (durable, priorities 0..2); whoever needs it first."""
    return await channel.declare_queue(
        hold_queue(model, owner), durable=True, arguments={"x-max-priority": HOLD_MAX_PRIORITY}
    )


RELEASE_ROOM = load_script(__file__, "release_room")
RELEASED = load_script(__file__, "released")


class FairShareStore:
    """The fair-share sets in Redis: windows, holds and the owners holding tasks.

    Args:
        redis: the platform's Redis.
        batch: the pipeline the store's script calls go through.
        prefix: key prefix.
        ttl_s: lifetime of the sets (refreshed on each write).
    """

    def __init__(self, redis: Redis, batch: ScriptBatcher, *, prefix: str, ttl_s: int) -> None:
        self.redis = redis
        self.ttl_s = ttl_s
        self.keys = FairShareKeys(prefix)
        self._batch = batch

    async def release_room(self, model: str, owner: str, window: int) -> int:
        """How many more of the owner's tasks their window has room for now."""
        keys = [self.keys.released(model, owner)]
        with store_errors():
            return int(await self._batch.call(RELEASE_ROOM, keys, [window]))

    async def is_held(self, model: str, owner: str, task_id: str) -> bool:
        """Whether the task still waits in its owner's hold (not ended, not moved already)."""
        with store_errors():
            score = await self.redis.zscore(self.keys.held(model, owner), task_id)
        return score is not None

    async def released(self, model: str, owner: str, task_id: str) -> None:
        """A held task was published to the work queue: count it in the owner's window (a
        few releases racing on several replicas may put it a task or two over)."""
        keys = [
            self.keys.released(model, owner),
            self.keys.held(model, owner),
            self.keys.holders(model),
        ]
        with store_errors():
            await self._batch.call(RELEASED, keys, [task_id, owner, self.ttl_s])

    async def share(self, model: str, owner: str) -> tuple[int, int]:
        """The owner's tasks of `model` in the work queue (or running), and held."""
        with store_errors():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.keys.released(model, owner))
                pipe.zcard(self.keys.held(model, owner))
                released, held = await pipe.execute()
        return int(released), int(held)

    async def holders(self, model: str) -> list[str]:
        """Owners with tasks of `model` held."""
        with store_errors():
            raw = await self.redis.smembers(self.keys.holders(model))  # type: ignore[misc,unused-ignore]
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in raw)
