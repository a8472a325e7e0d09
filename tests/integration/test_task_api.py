"""Cancel, batch submit, task lists, idempotent submit and deadlines, on real Redis/RabbitMQ."""

from __future__ import annotations

import asyncio
import time

import pytest

from deployments.echo import Echo
from deployments.iris import Iris
from protos.iris_pb2 import IrisRequest
from protos.task_pb2 import Batch
from tests.utils.models import Counting


async def submit(gateway, headers, name, body, **kwargs):
    return await gateway.post(f"/models/{name}/tasks", json=body, headers=headers, **kwargs)


async def document(gateway, headers, name, task_id):
    response = await gateway.get(
        f"/models/{name}/result", params={"task_id": task_id}, headers=headers
    )
    return response.json()


async def until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not (await condition() if asyncio.iscoroutinefunction(condition) else condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ---- cancel ----------------------------------------------------------------------------


async def test_cancel_pending__at_once_and_the_model_never_runs_it(gateway, user, deploy):
    headers = await user()
    model = await deploy(Counting())
    name = model.consumer.spec.name
    calls = Counting.calls
    task_id = (await submit(gateway, headers, name, {"text": "never"})).json()["task_id"]
    cancelled = await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    assert await model.drain() == 1  # the message is still delivered...
    assert Counting.calls == calls  # ... and acked without running the model
    assert model.consumer.stats.skipped == 1
    assert (await document(gateway, headers, name, task_id))["status"] == "cancelled"
    again = await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
    assert again.status_code == 409 and again.json()["error"] == "task_finished"


async def test_cancel_running__stopped_in_its_replica_and_ends_cancelled(
    gateway, user, deploy, services, settings
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    await model.run()
    # The replica's cancel channel listener, as a replica runs it.
    async with model.hearing_cancels(str(settings.redis_url)):
        task_id = (
            await submit(gateway, headers, name, {"text": "long", "delay_ms": 30_000})
        ).json()["task_id"]

        async def running():
            return (await document(gateway, headers, name, task_id))["status"] == "running"

        await until(running)
        started = time.monotonic()
        response = await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
        assert response.status_code == 202, response.text
        assert response.json()["status"] in ("running", "cancelled")
        final = await gateway.get(
            f"/models/{name}/result", params={"task_id": task_id, "wait": 10}, headers=headers
        )
        assert final.status_code == 200 and final.json()["status"] == "cancelled"
        assert time.monotonic() - started < 5  # stopped, not run to its 30 s end
        await until(lambda: model.consumer.stats.cancelled == 1)  # acked after the write
        assert await model.queue_length(model.names.work) == 0


async def test_cancel__403_other_user_404_unknown(gateway, user, deploy):
    owner, other = await user(), await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (await submit(gateway, owner, name, {"text": "x"})).json()["task_id"]
    forbidden = await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=other)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "forbidden"
    missing = await gateway.delete(f"/models/{name}/tasks/no-such-task", headers=owner)
    assert missing.status_code == 404
    assert (await document(gateway, owner, name, task_id))["status"] == "pending"


async def test_cancel_finished__409(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (await submit(gateway, headers, name, {"text": "done"})).json()["task_id"]
    await model.drain()
    response = await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
    assert response.status_code == 409 and response.json()["error"] == "task_finished"
    assert "succeeded" in response.json()["detail"]


# ---- batches ---------------------------------------------------------------------------


async def test_batch_json__ids_in_order_each_its_own_result(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    bodies = [{"text": f"item-{i}"} for i in range(25)]
    response = await gateway.post(f"/models/{name}/batches", json=bodies, headers=headers)
    assert response.status_code == 202, response.text
    ids = response.json()["task_ids"]
    assert len(ids) == 25 and len(set(ids)) == 25
    assert await model.drain() == 25
    results = [(await document(gateway, headers, name, i))["result"]["text"] for i in ids]
    assert results == [b["text"] for b in bodies]


async def test_batch_protobuf_form(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    requests = [
        IrisRequest(sepal_length=5.0, sepal_width=3.4, petal_length=1.5, petal_width=0.2),
        IrisRequest(sepal_length=6.7, sepal_width=3.0, petal_length=5.2, petal_width=2.3),
    ]
    body = Batch(requests=[r.SerializeToString() for r in requests]).SerializeToString()
    response = await gateway.post(
        f"/models/{name}/batches",
        content=body,
        headers={**headers, "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 202, response.text
    await model.drain()
    ids = response.json()["task_ids"]
    species = [(await document(gateway, headers, name, i))["result"]["species"] for i in ids]
    assert species == ["setosa", "virginica"]


async def test_batch_with_one_invalid_item__422_naming_it_and_nothing_queued(
    gateway, user, deploy, redis, settings
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    bodies = [{"text": "ok"}, {"text": "ok"}, {"text": 5}, {"text": "ok"}]
    response = await gateway.post(f"/models/{name}/batches", json=bodies, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_input"
    assert response.json()["detail"].startswith("item 2:")
    assert await model.queue_length(model.names.work) == 0
    assert not [k async for k in redis.scan_iter(f"{settings.redis_prefix}:task:*")]


async def test_batch_limits__413_over_the_cap_422_empty_or_not_a_list(
    gateway, user, deploy, settings
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    too_many = [{"text": "x"}] * (settings.max_batch_tasks + 1)
    over = await gateway.post(f"/models/{name}/batches", json=too_many, headers=headers)
    assert over.status_code == 413 and over.json()["error"] == "payload_too_large"
    for body in ([], {"text": "x"}):
        bad = await gateway.post(f"/models/{name}/batches", json=body, headers=headers)
        assert bad.status_code == 422, body
    assert await model.queue_length(model.names.work) == 0


# ---- lists -----------------------------------------------------------------------------


async def test_list_my_tasks__newest_first_paged_filtered_and_only_mine(gateway, user, deploy):
    headers, other = await user(), await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    ids = []
    for i in range(7):
        ids.append((await submit(gateway, headers, name, {"text": f"t{i}"})).json()["task_id"])
    await submit(gateway, other, name, {"text": "not mine"})
    await model.drain()
    cancel_me = (await submit(gateway, headers, name, {"text": "c"})).json()["task_id"]
    await gateway.delete(f"/models/{name}/tasks/{cancel_me}", headers=headers)

    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await gateway.get("/tasks", params=params, headers=headers)).json()
        assert len(page["tasks"]) <= 3
        seen.extend(task["task_id"] for task in page["tasks"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [cancel_me, *reversed(ids)]
    assert all("result" not in task for task in page["tasks"])

    succeeded = await gateway.get("/tasks", params={"status": "succeeded"}, headers=headers)
    assert [t["task_id"] for t in succeeded.json()["tasks"]] == list(reversed(ids))
    cancelled = await gateway.get(
        "/tasks", params={"status": "cancelled", "model": name}, headers=headers
    )
    assert [t["task_id"] for t in cancelled.json()["tasks"]] == [cancel_me]
    other_model = await gateway.get("/tasks", params={"model": "no-such"}, headers=headers)
    assert other_model.json() == {"tasks": [], "next_cursor": None}
    bad = await gateway.get("/tasks", params={"cursor": "%%%"}, headers=headers)
    assert bad.status_code == 422
    # Any well-formed cursor names a position: one past everything gives an empty page.
    past = await gateway.get("/tasks", params={"cursor": "1.0:zzz"}, headers=headers)
    assert past.status_code == 200 and past.json() == {"tasks": [], "next_cursor": None}
    assert (await gateway.get("/tasks")).status_code == 401


async def test_list_drops_expired_records(gateway, user, deploy, redis, services):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    gone = (await submit(gateway, headers, name, {"text": "gone"})).json()["task_id"]
    kept = (await submit(gateway, headers, name, {"text": "kept"})).json()["task_id"]
    await redis.delete(services.store.key(gone))  # as if its TTL ran out
    page = (await gateway.get("/tasks", headers=headers)).json()
    assert [t["task_id"] for t in page["tasks"]] == [kept]


# ---- idempotency -----------------------------------------------------------------------


async def test_idempotency_key__one_task_one_run_then_422_for_another_body(gateway, user, deploy):
    headers = await user()
    model = await deploy(Counting())
    name = model.consumer.spec.name
    calls = Counting.calls
    keyed = {**headers, "Idempotency-Key": "order-42"}
    first = await submit(gateway, keyed, name, {"text": "once"})
    # The same message as protobuf is the same request.
    from protos.echo_pb2 import EchoRequest

    second = await gateway.post(
        f"/models/{name}/tasks",
        content=EchoRequest(text="once").SerializeToString(),
        headers={**keyed, "Content-Type": "application/x-protobuf"},
    )
    assert first.status_code == second.status_code == 202
    assert first.json()["task_id"] == second.json()["task_id"]
    assert await model.drain() == 1
    assert Counting.calls == calls + 1
    different = await submit(gateway, keyed, name, {"text": "other"})
    assert different.status_code == 422 and different.json()["error"] == "idempotency_key_reused"
    # Keys are per user.
    other_user = {**(await user()), "Idempotency-Key": "order-42"}
    assert (await submit(gateway, other_user, name, {"text": "other"})).status_code == 202


async def test_idempotency_key_on_batches(gateway, user, deploy):
    headers = {**(await user()), "Idempotency-Key": "batch-1"}
    model = await deploy(Echo())
    name = model.consumer.spec.name
    bodies = [{"text": "a"}, {"text": "b"}]
    first = await gateway.post(f"/models/{name}/batches", json=bodies, headers=headers)
    second = await gateway.post(f"/models/{name}/batches", json=bodies, headers=headers)
    assert first.json()["task_ids"] == second.json()["task_ids"]
    assert await model.drain() == 2


@pytest.fixture
def slow_publish(services, monkeypatch):
    """Make the gateway's next publish take `delay_s`, then do `then` ("publish" or "fail")."""
    from app.core.broker import BrokerError

    original = services.publisher.publish
    plan = {}

    async def publish(*args, **kwargs):
        step = plan.pop("next", None)
        if step is not None:
            delay_s, then = step
            await asyncio.sleep(delay_s)
            if then == "fail":
                raise BrokerError("the broker went away")
        return await original(*args, **kwargs)

    monkeypatch.setattr(services.publisher, "publish", publish)

    def arm(delay_s, then="publish"):
        plan["next"] = (delay_s, then)

    return arm


async def test_concurrent_submits_with_one_key_make_one_task(gateway, user, deploy, store):
    headers = {**(await user()), "Idempotency-Key": "same-everywhere"}
    model = await deploy(Counting())
    name = model.consumer.spec.name
    calls = Counting.calls
    answers = await asyncio.gather(
        *(submit(gateway, headers, name, {"text": "once"}) for _ in range(8))
    )
    assert [a.status_code for a in answers] == [202] * 8
    assert len({a.json()["task_id"] for a in answers}) == 1
    listed = (await gateway.get("/tasks", params={"model": name}, headers=headers)).json()
    assert len(listed["tasks"]) == 1
    assert await model.drain() == 1 and Counting.calls == calls + 1


async def test_a_repeat_while_the_first_is_in_progress_gets_its_outcome_once_done(
    gateway, user, deploy, slow_publish
):
    headers = {**(await user()), "Idempotency-Key": "slow-first"}
    name = (await deploy(Echo())).consumer.spec.name
    slow_publish(0.5)
    first = asyncio.ensure_future(submit(gateway, headers, name, {"text": "x"}))
    await asyncio.sleep(0.1)  # the first holds the key and is publishing
    second = await submit(gateway, headers, name, {"text": "x"})
    assert first.done(), "the repeat answered before the first request's outcome"
    assert second.status_code == 202
    assert second.json()["task_id"] == first.result().json()["task_id"]
    # The id it was given names a task that exists.
    exists = await gateway.get(
        f"/models/{name}/result", params={"task_id": second.json()["task_id"]}, headers=headers
    )
    assert exists.status_code == 202


async def test_a_repeat_never_gets_the_ids_of_a_refused_submit(
    gateway, user, deploy, slow_publish, store
):
    headers = {**(await user()), "Idempotency-Key": "first-fails"}
    name = (await deploy(Echo())).consumer.spec.name
    slow_publish(0.4, then="fail")
    first = asyncio.ensure_future(submit(gateway, headers, name, {"text": "x"}))
    await asyncio.sleep(0.1)
    second = await submit(gateway, headers, name, {"text": "x"})
    assert (await first).status_code == 503
    assert second.status_code == 202
    task_id = second.json()["task_id"]
    record = await store.get(task_id)
    assert record is not None and record.status.value == "pending"
    mine = (await gateway.get("/tasks", headers=headers)).json()["tasks"]
    assert {t["status"] for t in mine if t["task_id"] != task_id} == {"failed"}


async def test_a_repeat_of_a_request_still_in_progress_after_a_while__409(
    gateway, user, deploy, slow_publish
):
    headers = {**(await user()), "Idempotency-Key": "very-slow-first"}
    name = (await deploy(Echo())).consumer.spec.name
    slow_publish(3.5)
    first = asyncio.ensure_future(submit(gateway, headers, name, {"text": "x"}))
    await asyncio.sleep(0.1)
    second = await submit(gateway, headers, name, {"text": "x"})
    assert second.status_code == 409, second.text
    assert second.json()["error"] == "idempotency_key_in_progress"
    assert second.headers["Retry-After"] == "1"
    assert (await first).status_code == 202


# ---- deadlines -------------------------------------------------------------------------


async def test_deadline_passed_before_start__expired_and_never_run(gateway, user, deploy):
    headers = await user()
    model = await deploy(Counting())
    name = model.consumer.spec.name
    calls = Counting.calls
    task_id = (
        await submit(gateway, headers, name, {"text": "late"}, params={"deadline_s": 0.2})
    ).json()["task_id"]
    # A waiter learns it at the deadline, with no replica there to notice.
    started = time.monotonic()
    waited = await gateway.get(
        f"/models/{name}/result", params={"task_id": task_id, "wait": 10}, headers=headers
    )
    assert time.monotonic() - started < 3
    assert waited.status_code == 200
    assert waited.json()["status"] == "expired"
    assert waited.json()["error_code"] == "deadline_exceeded"
    assert await model.drain() == 1
    assert Counting.calls == calls and model.consumer.stats.skipped == 1


async def test_deadline_met__runs_normally(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    response = await submit(gateway, headers, name, {"text": "in time"}, params={"deadline_s": 60})
    await model.drain()
    doc = await document(gateway, headers, name, response.json()["task_id"])
    assert doc["status"] == "succeeded" and doc["deadline"]


async def test_bad_submit_options__422(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    for params, status in (
        ({"deadline_s": 0}, 422),
        ({"deadline_s": -1}, 422),
        ({"callback_url": "ftp://example.com/x"}, 422),
        ({"callback_url": "http://10.0.0.1/hook"}, 403),
        ({"callback_url": "http://localhost:8000/hook"}, 403),
    ):
        response = await submit(gateway, headers, name, {"text": "x"}, params=params)
        assert response.status_code == status, (params, response.text)
    assert await model.queue_length(model.names.work) == 0
