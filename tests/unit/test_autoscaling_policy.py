from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deployments._runtime.autoscaling import (
    HELD_METRIC,
    INFLIGHT_METRIC,
    QueueBacklogPolicy,
    desired_replicas,
    latest_max,
    latest_total,
)


@dataclass
class Point:
    value: float
    timestamp: float = 0.0


@dataclass
class Context:
    raw_metrics: dict[str, dict[Any, Any]] | None = None
    total_num_requests: float = 0
    policy_state: dict[str, Any] = field(default_factory=dict)
    target_num_replicas: int = 0


def test_desired_replicas_from_backlog_and_running_work():
    assert desired_replicas(ready=0, inflight=0, handle_requests=0, target=8) == 0
    assert desired_replicas(ready=1, inflight=0, handle_requests=0, target=8) == 1
    assert desired_replicas(ready=16, inflight=8, handle_requests=0, target=8) == 3
    assert desired_replicas(ready=0, inflight=3, handle_requests=2, target=5) == 1


def test_latest_value_per_replica_is_summed():
    metrics = {INFLIGHT_METRIC: {"r1": [Point(9), Point(2)], "r2": [Point(3)], "r3": []}}
    assert latest_total(metrics, INFLIGHT_METRIC) == 5
    assert latest_total(None, INFLIGHT_METRIC) == 0
    assert latest_total({}, INFLIGHT_METRIC) == 0


async def test_policy_polls_without_blocking_and_uses_the_latest_count():
    policy = QueueBacklogPolicy(queue="q", amqp_url="amqp://unused", target_per_replica=4)
    polls = 0

    async def fake_poll() -> None:
        nonlocal polls
        polls += 1
        policy.ready = 10

    policy._poll_once = fake_poll  # type: ignore[method-assign]
    context = Context(raw_metrics={INFLIGHT_METRIC: {"r1": [Point(2)]}})
    first, _ = policy(context)
    assert first == 1  # the poll was only scheduled: 2 running tasks so far
    import asyncio

    await asyncio.sleep(0)
    second, state = policy(context)
    assert second == 3 and state["ready"] == 10  # (10 + 2) / 4
    assert polls == 1, "one poll per interval, however often Serve asks"


async def test_a_drained_queue_and_idle_replicas__zero():
    """After a backlog (the last poll saw 12), the next poll finds the queue empty and no
    replica busy: the policy asks for no replica at all."""
    import asyncio

    policy = QueueBacklogPolicy(queue="q", amqp_url="amqp://unused", poll_interval_s=0)
    readings = [12, 0]

    async def fake_poll() -> None:
        policy.ready = readings.pop(0) if len(readings) > 1 else readings[0]

    policy._poll_once = fake_poll  # type: ignore[method-assign]
    policy(Context())
    await asyncio.sleep(0)
    busy, _ = policy(Context())
    assert busy == 2  # ceil(12 / 8): the first reading, while the second poll is scheduled
    await asyncio.sleep(0)
    idle, state = policy(Context(raw_metrics={INFLIGHT_METRIC: {"r1": [Point(3), Point(0)]}}))
    assert idle == 0 and state["ready"] == 0


async def test_tasks_held_back_by_fair_share_count_as_backlog_once():
    """Every replica reports the model's held tasks (one model-wide count): the policy takes
    the newest of them, not their sum, beside the queue's ready messages."""
    policy = QueueBacklogPolicy(queue="q", amqp_url="amqp://unused", target_per_replica=10)

    async def fake_poll() -> None:
        policy.ready = 5

    policy._poll_once = fake_poll  # type: ignore[method-assign]
    import asyncio

    policy(Context())
    await asyncio.sleep(0)
    held = {"r1": [Point(40)], "r2": [Point(90), Point(35)]}
    desired, state = policy(Context(raw_metrics={HELD_METRIC: held}))
    assert state["held"] == 40
    assert desired == 5  # ceil((5 ready + 40 held) / 10)
    assert latest_max(None, HELD_METRIC) == 0


async def test_a_model_whose_queue_does_not_exist_yet_keeps_its_starting_replica():
    """A new model that scales to zero: Serve starts one replica, which declares the queue and
    registers the model. Until the queue is found, "no backlog" must not stop that replica."""
    import asyncio

    policy = QueueBacklogPolicy(queue="q", amqp_url="amqp://unused", poll_interval_s=0)
    exists = False

    async def fake_poll() -> None:
        if exists:
            policy.ready, policy.seen_queue = 0, True

    policy._poll_once = fake_poll  # type: ignore[method-assign]
    starting = Context(target_num_replicas=1)
    assert policy(starting)[0] == 1
    await asyncio.sleep(0)
    assert policy(starting)[0] == 1  # polled: still no queue
    exists = True
    await asyncio.sleep(0)
    policy(starting)
    await asyncio.sleep(0)
    assert policy(starting)[0] == 0  # the queue is there and empty: zero is right
