"""`QueueBacklogPolicy`: Ray Serve replicas follow the backlog of a model's RabbitMQ queue.

Serve's default autoscaler counts only requests that come through handles and HTTP; work a
replica pulls from RabbitMQ is invisible to it. This class-based custom policy (Ray 2.60's
`AutoscalingPolicy(policy_function=...)`) asks for

    ceil((messages ready in the queue + tasks held back by fair share
          + tasks running in replicas) / target per replica)

and leaves bounds, scaling factors and the up/down delays to Serve, which applies the
deployment's `autoscaling_config` around any custom policy.

It runs inside the Serve controller, on the controller's event loop: `__call__` must not
block. It starts one short poll of RabbitMQ per `poll_interval_s` as a one-shot task and
uses the latest answer (a loop task would keep the policy alive after Serve drops it).
Reading the queue itself is what lets a model scaled to zero wake up: no replica exists to
report anything. Keep this module's imports minimal: a failed import wedges the controller.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

logger = logging.getLogger("ray.serve")

DEFAULT_POLL_INTERVAL_S = 1.0
# The metrics each replica reports from `record_autoscaling_stats`: its running tasks, and the
# tasks of its model held back by fair share (the same for every replica: the newest counts).
INFLIGHT_METRIC = "inflight"
HELD_METRIC = "held"


def desired_replicas(ready: float, inflight: float, handle_requests: float, target: int) -> int:
    """Replicas needed for the work there is, before Serve applies bounds and delays."""
    demand = max(0.0, ready) + max(0.0, inflight) + max(0.0, handle_requests)
    return math.ceil(demand / target) if demand > 0 else 0


def latest_total(raw_metrics: dict[str, dict[Any, Any]] | None, metric: str) -> float:
    """Sum over replicas of the newest value each reported for `metric`."""
    return sum(_latest(raw_metrics, metric))


def latest_max(raw_metrics: dict[str, dict[Any, Any]] | None, metric: str) -> float:
    """The largest newest value any replica reported for `metric` (one model-wide count)."""
    return max(_latest(raw_metrics, metric), default=0.0)


def _latest(raw_metrics: dict[str, dict[Any, Any]] | None, metric: str) -> list[float]:
    if not raw_metrics or metric not in raw_metrics:
        return []
    return [float(series[-1].value) for series in raw_metrics[metric].values() if series]


class QueueBacklogPolicy:
    """Target replicas from a queue's ready messages plus the replicas' running tasks.

    Args:
        queue: the model's work queue.
        amqp_url: RabbitMQ to poll.
        target_per_replica: queued plus running tasks one replica should carry.
        poll_interval_s: how often to ask RabbitMQ for the queue length.
    """

    def __init__(
        self,
        queue: str,
        amqp_url: str,
        target_per_replica: int = 8,
        poll_interval_s: float = DEFAULT_POLL_INTERVAL_S,
    ) -> None:
        self.queue = queue
        self.amqp_url = amqp_url
        self.target_per_replica = max(1, int(target_per_replica))
        self.poll_interval_s = poll_interval_s
        self.ready = 0
        # Whether the queue was ever found: a model none of whose replicas has started yet
        # has no queue (replicas declare it), which must not read as "no work".
        self.seen_queue = False
        self._poll: asyncio.Task[None] | None = None
        self._last_poll = 0.0
        self._connection: Any = None
        self._queue: Any = None

    async def _poll_once(self) -> None:
        import aio_pika

        try:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(self.amqp_url, timeout=5)
                self._queue = None
            if self._queue is None:
                channel = await self._connection.channel()
                self._queue = await channel.declare_queue(self.queue, passive=True)
            else:
                # A passive declare on a robust channel caches the queue object; re-declaring
                # it is what refreshes the message count.
                await self._queue.declare()
            self.ready = int(self._queue.declaration_result.message_count or 0)
            self.seen_queue = True
        except Exception as exc:  # keep the last value; the next tick tries again
            self._queue = None
            logger.warning("backlog of queue %s unknown: %s", self.queue, exc)

    def __call__(self, ctx: Any) -> tuple[int, dict[str, Any]]:
        """Serve's question: how many replicas now?"""
        now = time.monotonic()
        if (self._poll is None or self._poll.done()) and now - self._last_poll >= (
            self.poll_interval_s
        ):
            self._last_poll = now
            self._poll = asyncio.get_running_loop().create_task(self._poll_once())
        inflight = latest_total(ctx.raw_metrics, INFLIGHT_METRIC)
        held = latest_max(ctx.raw_metrics, HELD_METRIC)
        handle_requests = float(ctx.total_num_requests or 0)
        desired = desired_replicas(
            self.ready + held, inflight, handle_requests, self.target_per_replica
        )
        if not self.seen_queue:
            # Until a replica has declared the queue (and registered the model), keep the
            # replicas Serve is starting: stopping the first one of a model that scales to
            # zero while it starts would leave the model never registered, never listed.
            desired = max(desired, int(ctx.target_num_replicas or 0))
        state = dict(ctx.policy_state or {})
        state.update({"ready": self.ready, "held": held, "inflight": inflight})
        return desired, state
