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
only inside the store's Lua scripts together with the task's state, so the counts are exact:

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

# The hold queues' highest AMQP priority (one per `Priority`).
HOLD_MAX_PRIORITY = 2
# The window when a model registered none (an older replica).
DEFAULT_WINDOW = 64

# Lua building the same key names as `FairShareKeys` (included by the store's scripts).
FAIR_KEYS_LUA = """
local function fair_key(prefix, kind, model, owner)
  return prefix .. ':fair:' .. model .. ':' .. kind .. ':' .. owner
end
local function holders_key(prefix, model)
  return prefix .. ':fair:' .. model .. ':holders'
end
"""


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
    """Names of the fair-share sets of one platform prefix (their Lua twin: `FAIR_KEYS_LUA`)."""

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
