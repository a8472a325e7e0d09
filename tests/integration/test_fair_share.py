"""Fair share inside one model's queue, on the real Redis and RabbitMQ: a user's backlog does
not delay another user, priorities order a user's own held work, and nothing accepted is lost
on the way through a hold queue."""

from __future__ import annotations

import asyncio

from app.core.lifecycle import TaskStatus
from app.sharing.fair_share import hold_queue
from app.sharing.limits import LimitOverrides
from tests.utils.models import Recording

WINDOW = 4


async def submit_batch(gateway, name, headers, texts, **params):
    answer = await gateway.post(
        f"/models/{name}/batches",
        json=[{"text": text} for text in texts],
        headers=headers,
        params=params,
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["task_ids"]


async def submit(gateway, name, headers, text, **params):
    answer = await gateway.post(
        f"/models/{name}/tasks", json={"text": text}, headers=headers, params=params
    )
    assert answer.status_code == 202, answer.text
    return answer.json()["task_id"]


async def test_a_second_user_waits_behind_one_window_of_the_firsts_backlog(
    gateway, user, deploy, store
):
    model = Recording()
    harness = await deploy(model, fair_share_window=WINDOW)
    name = harness.consumer.spec.name
    alice, bob = await user(), await user()
    alices = await submit_batch(gateway, name, alice, [f"a{i}" for i in range(100)])
    bobs = await submit_batch(gateway, name, bob, [f"b{i}" for i in range(3)])
    # Alice's window is in the queue, the rest of her backlog is held; Bob's all went in.
    assert await store.share(name, alice_login := (await store.get(alices[0])).owner) == (
        WINDOW,
        100 - WINDOW,
    )
    assert await harness.queue_length(name) == WINDOW + 3
    assert await harness.queue_length(hold_queue(name, alice_login)) == 100 - WINDOW

    assert await harness.drain() == 103
    last_of_bob = max(model.order.index(f"b{i}") for i in range(3))
    # Ahead of Bob: at most one window of Alice's (first come, first served would be 100).
    assert last_of_bob < WINDOW + 3, model.order[:20]
    everything = [f"a{i}" for i in range(100)] + [f"b{i}" for i in range(3)]
    assert sorted(model.order) == sorted(everything)
    records = await store.get_many(alices + bobs)
    assert {r.status for r in records} == {TaskStatus.SUCCEEDED}
    assert await store.share(name, alice_login) == (0, 0)
    assert await store.holders(name) == []


async def test_with_fair_share_off_the_queue_is_first_come_first_served(
    gateway, user, deploy, services
):
    services.submitter._fair_share = False
    model = Recording()
    harness = await deploy(model, fair_share_window=WINDOW)
    name = harness.consumer.spec.name
    alice, bob = await user(), await user()
    await submit_batch(gateway, name, alice, [f"a{i}" for i in range(30)])
    await submit_batch(gateway, name, bob, ["b0"])
    await harness.drain()
    assert model.order.index("b0") == 30


async def test_a_users_held_tasks_run_highest_priority_first(
    gateway, user, deploy, services, store
):
    model = Recording()
    harness = await deploy(model, fair_share_window=WINDOW)
    name = harness.consumer.spec.name
    login = "prio-" + name
    headers = await user(login)
    await services.limits.update(login, LimitOverrides(max_priority="high"))
    await submit_batch(gateway, name, headers, [f"low{i}" for i in range(10)], priority="low")
    await submit_batch(gateway, name, headers, [f"normal{i}" for i in range(3)])
    urgent = await submit(gateway, name, headers, "high", priority="high")
    assert (await store.get(urgent)).fields["priority"] == "high"
    await harness.drain()
    # The window went in first come; of what waited, high ran first, then normal, then low
    # (a batch's tasks are published at once: their order among themselves is not kept).
    lows = {f"low{i}" for i in range(10)}
    assert set(model.order[:WINDOW]) <= lows
    assert model.order[WINDOW] == "high"
    assert set(model.order[WINDOW + 1 : WINDOW + 4]) == {f"normal{i}" for i in range(3)}
    assert set(model.order[WINDOW + 4 :]) | set(model.order[:WINDOW]) == lows, model.order


async def test_a_priority_above_the_users_highest__403_until_an_admin_allows_it(
    gateway, user, deploy, services
):
    harness = await deploy(Recording(), fair_share_window=WINDOW)
    name = harness.consumer.spec.name
    login = "wants-high-" + name
    headers = await user(login)
    refused = await gateway.post(
        f"/models/{name}/tasks", json={"text": "x"}, headers=headers, params={"priority": "high"}
    )
    assert refused.status_code == 403 and refused.json()["error"] == "priority_not_allowed"
    assert await harness.queue_length(name) == 0
    await services.limits.update(login, LimitOverrides(max_priority="high"))
    await submit(gateway, name, headers, "x", priority="high")


async def test_a_cancelled_held_task_never_runs_and_frees_its_place(gateway, user, deploy, store):
    model = Recording()
    harness = await deploy(model, fair_share_window=WINDOW)
    name = harness.consumer.spec.name
    headers = await user()
    ids = await submit_batch(gateway, name, headers, [f"t{i}" for i in range(WINDOW + 3)])
    held = ids[WINDOW + 1]
    cancelled = await gateway.delete(f"/models/{name}/tasks/{held}", headers=headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    owner = (await store.get(held)).owner
    assert await store.share(name, owner) == (WINDOW, 2)
    assert await harness.drain() == WINDOW + 2
    assert f"t{WINDOW + 1}" not in model.order and len(model.order) == WINDOW + 2
    assert await harness.queue_length(hold_queue(name, owner)) == 0


async def test_a_release_cut_short_loses_nothing_and_runs_nothing_twice(
    gateway, user, deploy, store, amqp
):
    """A replica that died between publishing a held task into the work queue and
    acknowledging it in the hold queue leaves the task in both: it still runs once."""
    from app.core.broker import persistent_message, publish_confirmed

    model = Recording()
    harness = await deploy(model, fair_share_window=WINDOW)
    name = harness.consumer.spec.name
    headers = await user()
    ids = await submit_batch(gateway, name, headers, [f"t{i}" for i in range(WINDOW + 2)])
    owner = (await store.get(ids[0])).owner
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
    queue = await channel.get_queue(hold_queue(name, owner))
    message = await queue.get(no_ack=False)
    await publish_confirmed(
        channel,
        name,
        persistent_message(message.body, message_id=message.message_id),
        timeout_s=3,
    )
    await channel.close()  # the replica died: the held copy goes back to its queue
    await asyncio.sleep(0.2)
    assert await harness.drain() == WINDOW + 3  # one task delivered twice...
    assert sorted(model.order) == sorted(f"t{i}" for i in range(WINDOW + 2))  # ...run once
    records = await store.get_many(ids)
    assert all(r.status is TaskStatus.SUCCEEDED for r in records)
    assert await store.share(name, owner) == (0, 0)
