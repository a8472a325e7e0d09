"""Webhooks on real Redis/RabbitMQ and a local receiver: signed, retried, recorded, durable."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import standardwebhooks

from app.webhooks.dispatcher import WebhookDispatcher
from deployments.echo import Echo
from tests.utils.models import HashingEmbedder
from tests.utils.webhooks import Receiver


@pytest.fixture
async def dispatcher(settings, store, amqp):
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
    async with httpx.AsyncClient() as http:
        dispatcher = WebhookDispatcher(store, settings, http=http)
        await dispatcher.attach(channel)
        yield dispatcher
    queues = [settings.webhook_queue, f"{settings.webhook_queue}.defer"] + [
        f"{settings.webhook_queue}.retry.{n}" for n in range(1, settings.webhook_max_attempts)
    ]
    for queue in queues:
        await channel.queue_delete(queue)
    await channel.close()


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


async def deliver_until(dispatcher, done, timeout=10.0):
    """Run the dispatcher in bursts (retries come back after their backoff) until `done()`."""
    deadline = time.monotonic() + timeout
    while not await done():
        assert time.monotonic() < deadline, "webhook not settled in time"
        await dispatcher.run_until_empty()
        await asyncio.sleep(0.02)


async def test_receiver_failing_twice__third_delivery_signed_and_recorded(
    gateway, user, deploy, dispatcher, receiver, settings, store
):
    receiver.statuses = [500, 500]
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    response = await gateway.post(
        f"/models/{name}/tasks",
        params={"callback_url": receiver.url},
        json={"text": "hooked"},
        headers=headers,
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    await model.drain()

    async def delivered():
        record = await store.get(task_id)
        return record.webhook_status == "delivered"

    await deliver_until(dispatcher, delivered)
    assert [d.answered for d in receiver.deliveries] == [500, 500, 200]
    last = receiver.deliveries[-1]
    # A receiver written from the Standard Webhooks library, with the owner's own secret.
    secret = (await gateway.get("/account/webhook-secret", headers=headers)).json()["secret"]
    sent = standardwebhooks.Webhook(secret).verify(last.body, last.headers)
    assert sent["task_id"] == task_id and sent["status"] == "succeeded"
    assert sent["result"]["text"] == "hooked"
    other = (await gateway.get("/account/webhook-secret", headers=await user())).json()["secret"]
    assert other != secret
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(other).verify(last.body, last.headers)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(last.body + b" ", last.headers)
    # Every attempt names the same message: a receiver dedupes on webhook-id.
    assert [d.headers["webhook-id"] for d in receiver.deliveries] == [task_id] * 3
    webhook = (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    ).json()["webhook"]
    assert webhook["status"] == "delivered" and webhook["attempts"] == 3
    assert webhook["last_error"] is None and webhook["delivered_at"]


async def test_receiver_down__failed_after_every_attempt_result_intact(
    gateway, user, deploy, dispatcher, settings, store
):
    dead = Receiver()
    url = dead.url
    dead.close()  # nothing listens there any more
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (
        await gateway.post(
            f"/models/{name}/tasks",
            params={"callback_url": url},
            json={"text": "kept"},
            headers=headers,
        )
    ).json()["task_id"]
    await model.drain()

    async def failed():
        return (await store.get(task_id)).webhook_status == "failed"

    await deliver_until(dispatcher, failed)
    document = (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    ).json()
    assert document["status"] == "succeeded" and document["result"]["text"] == "kept"
    assert document["webhook"]["status"] == "failed"
    assert document["webhook"]["attempts"] == settings.webhook_max_attempts
    assert document["webhook"]["last_error"]


async def test_cancelled_pending_task_is_delivered_too(
    gateway, user, deploy, dispatcher, receiver, store
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (
        await gateway.post(
            f"/models/{name}/tasks",
            params={"callback_url": receiver.url},
            json={"text": "x"},
            headers=headers,
        )
    ).json()["task_id"]
    await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
    await model.drain()  # the replica skips it, and queues no second delivery

    async def delivered():
        return (await store.get(task_id)).webhook_status == "delivered"

    await deliver_until(dispatcher, delivered)
    await dispatcher.run_until_empty()
    assert len(receiver.deliveries) == 1
    assert json.loads(receiver.deliveries[0].body)["status"] == "cancelled"


async def test_duplicate_jobs_deliver_once(
    gateway, user, deploy, dispatcher, receiver, store, amqp
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (
        await gateway.post(
            f"/models/{name}/tasks",
            params={"callback_url": receiver.url},
            json={"text": "x"},
            headers=headers,
        )
    ).json()["task_id"]
    await model.drain()
    # As after a replica died between queueing the delivery and acking the task.
    await model.consumer._queue_webhook(task_id)
    await dispatcher.run_until_empty()
    assert (await store.get(task_id)).webhook_status == "delivered"
    assert len(receiver.deliveries) == 1


def _resolving(*answers):
    """A resolver that answers `answers[n]` to its n-th lookup (the last one after that)."""
    calls = []

    async def resolve(host, port):
        calls.append(host)
        return list(answers[min(len(calls), len(answers)) - 1])

    resolve.calls = calls
    return resolve


@pytest.fixture
async def make_dispatcher(settings, store, amqp):
    """A dispatcher with its own resolver and settings; consuming until the test ends."""
    made = []

    async def make(resolve, **changes):
        # The gateway (which checks callbacks at submit) shares these settings.
        settings.webhook_allowed_hosts = changes.pop("webhook_allowed_hosts")
        channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
        http = httpx.AsyncClient()
        dispatcher = WebhookDispatcher(
            store, settings.model_copy(update=changes), http=http, resolve=resolve
        )
        await dispatcher.attach(channel)
        made.append((dispatcher, http, channel))
        return dispatcher

    yield make
    for dispatcher, http, channel in made:
        await dispatcher.stop(drain_timeout_s=5)
        await http.aclose()
        await channel.close()


async def _submit_hooked(gateway, headers, name, url, n=1):
    ids = []
    for i in range(n):
        answer = await gateway.post(
            f"/models/{name}/tasks",
            params={"callback_url": url},
            json={"text": f"t{i}"},
            headers=headers,
        )
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["task_id"])
    return ids


async def test_a_name_resolving_to_loopback_is_never_connected_to(
    gateway, user, deploy, receiver, store, make_dispatcher
):
    resolve = _resolving(["127.0.0.1"])
    dispatcher = await make_dispatcher(resolve, webhook_allowed_hosts=["*"])
    model = await deploy(Echo())
    name = model.consumer.spec.name
    # Allowed at submit (a public-looking name); its address is what refuses it.
    url = f"http://hooks.rebind.example:{receiver.port}/hook"
    [task_id] = await _submit_hooked(gateway, await user(), name, url)
    await model.drain()
    await deliver_until(dispatcher, lambda: _webhook_is(store, task_id, "failed"))
    assert receiver.deliveries == []
    record = await store.get(task_id)
    assert "non-public" in record.fields["webhook_error"]
    assert resolve.calls == ["hooks.rebind.example"]


async def test_a_delivery_goes_to_the_address_it_checked(
    gateway, user, deploy, receiver, store, make_dispatcher
):
    """One lookup per attempt, and the connection is made to the address that lookup gave
    (a second lookup, which a rebinding name would answer differently, never happens)."""
    resolve = _resolving(["127.0.0.1"], ["10.255.255.1"])
    dispatcher = await make_dispatcher(resolve, webhook_allowed_hosts=["pinned.test"])
    model = await deploy(Echo())
    name = model.consumer.spec.name
    [task_id] = await _submit_hooked(
        gateway, await user(), name, f"http://pinned.test:{receiver.port}/hook"
    )
    await model.drain()
    await deliver_until(dispatcher, lambda: _webhook_is(store, task_id, "delivered"))
    assert resolve.calls == ["pinned.test"]
    assert receiver.deliveries[0].headers["Host"] == f"pinned.test:{receiver.port}"


async def test_a_slow_receiver_holds_only_its_share_of_deliveries(
    gateway, user, deploy, store, make_dispatcher
):
    slow, fast = Receiver(delay_s=0.6), Receiver()
    try:
        resolve = _resolving(["127.0.0.1"])
        dispatcher = await make_dispatcher(
            resolve, webhook_allowed_hosts=["slow.test", "fast.test"], webhook_max_per_host=2
        )
        model = await deploy(Echo())
        name = model.consumer.spec.name
        slow_ids = await _submit_hooked(
            gateway, await user(), name, f"http://slow.test:{slow.port}/hook", n=6
        )
        [fast_id] = await _submit_hooked(
            gateway, await user(), name, f"http://fast.test:{fast.port}/hook"
        )
        await model.drain()
        await dispatcher.start()
        await wait_until(lambda: _all_delivered(store, [*slow_ids, fast_id]), timeout=20)
        # At most two at once at the slow host, while the other host got its delivery at once.
        assert slow.most_at_once[f"slow.test:{slow.port}"] == 2
        assert fast.deliveries[0].received_at < sorted(d.received_at for d in slow.deliveries)[2]
    finally:
        slow.close()
        fast.close()


async def test_a_burst_to_a_prompt_receiver_waits_its_turn_not_a_deferral(
    gateway, user, deploy, store, make_dispatcher
):
    """Past the host's limit, a delivery to a receiver that answers at once waits in the
    dispatcher for a free lease (milliseconds) instead of a second in the defer queue."""
    receiver = Receiver()
    try:
        dispatcher = await make_dispatcher(
            _resolving(["127.0.0.1"]), webhook_allowed_hosts=["prompt.test"], webhook_max_per_host=2
        )
        deferred = []
        real_defer = dispatcher._defer

        async def counting_defer(job):
            deferred.append(job.task_id)
            await real_defer(job)

        dispatcher._defer = counting_defer
        model = await deploy(Echo())
        name = model.consumer.spec.name
        ids = await _submit_hooked(
            gateway, await user(), name, f"http://prompt.test:{receiver.port}/hook", n=12
        )
        await model.drain()
        await dispatcher.start()
        await wait_until(lambda: _all_delivered(store, ids), timeout=20)
        assert receiver.most_at_once[f"prompt.test:{receiver.port}"] == 2
        assert deferred == []
    finally:
        receiver.close()


async def test_a_users_deliveries_in_flight_are_limited(
    gateway, user, deploy, store, services, make_dispatcher
):
    from app.sharing.limits import LimitOverrides

    receiver = Receiver(delay_s=0.3)
    try:
        dispatcher = await make_dispatcher(
            _resolving(["127.0.0.1"]), webhook_allowed_hosts=["one.test"]
        )
        model = await deploy(Echo())
        name = model.consumer.spec.name
        login = "hooks-" + name
        headers = await user(login)
        await services.limits.update(login, LimitOverrides(webhooks_in_flight=1))
        ids = await _submit_hooked(
            gateway, headers, name, f"http://one.test:{receiver.port}/hook", n=4
        )
        await model.drain()
        await dispatcher.start()
        await wait_until(lambda: _all_delivered(store, ids), timeout=20)
        assert receiver.most_at_once[f"one.test:{receiver.port}"] == 1
    finally:
        receiver.close()


async def _webhook_is(store, task_id, status):
    return (await store.get(task_id)).webhook_status == status


async def _all_delivered(store, task_ids):
    records = await store.get_many(task_ids)
    return all(r.webhook_status == "delivered" for r in records)


async def wait_until(condition, timeout):
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "not settled in time"
        await asyncio.sleep(0.05)


async def test_an_openai_batch_delivers_its_end_once_signed_and_records_it(
    gateway, user, deploy, dispatcher, receiver, services
):
    """A batch created with a callback: when it ends, its batch object is POSTed there,
    signed with the owner's secret, once (a retry after a failed attempt names it the same);
    the batch shows the delivery. A batch that fails at once delivers its end too."""
    receiver.statuses = [503]
    headers = await user()
    model = await deploy(HashingEmbedder())
    name = model.consumer.spec.name
    await model.run()
    lines = [
        {
            "custom_id": f"c{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": name, "input": f"text {i}"},
        }
        for i in range(5)
    ]
    body = "\n".join(json.dumps(line) for line in lines).encode()
    upload = await gateway.post(
        "/v1/files", files={"file": ("in.jsonl", body)}, data={"purpose": "batch"}, headers=headers
    )
    created = await gateway.post(
        "/v1/batches",
        params={"callback_url": receiver.url},
        json={"input_file_id": upload.json()["id"], "endpoint": "/v1/embeddings"},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    batch_id = created.json()["id"]
    assert created.json()["webhook"]["status"] == "pending"

    async def delivered():
        batch = (await gateway.get(f"/v1/batches/{batch_id}", headers=headers)).json()
        return batch["webhook"]["status"] == "delivered"

    await deliver_until(dispatcher, delivered, timeout=30)
    assert [d.answered for d in receiver.deliveries] == [503, 200]
    assert {d.headers["webhook-id"] for d in receiver.deliveries} == {batch_id}
    secret = (await gateway.get("/account/webhook-secret", headers=headers)).json()["secret"]
    sent = standardwebhooks.Webhook(secret).verify(
        receiver.deliveries[-1].body, receiver.deliveries[-1].headers
    )
    assert sent["id"] == batch_id and sent["object"] == "batch"
    assert sent["status"] == "completed" and sent["request_counts"]["completed"] == 5
    webhook = (await gateway.get(f"/v1/batches/{batch_id}", headers=headers)).json()["webhook"]
    assert webhook["attempts"] == 2 and webhook["delivered_at"]
    # Nothing more comes: the end was queued once, however many worker turns saw it.
    await asyncio.sleep(0.5)
    assert await dispatcher.run_until_empty() == 0 and len(receiver.deliveries) == 2

    bad = await gateway.post(
        "/v1/files",
        files={"file": ("bad.jsonl", b'{"custom_id": "x"}\n')},
        data={"purpose": "batch"},
        headers=headers,
    )
    failed = await gateway.post(
        "/v1/batches",
        params={"callback_url": receiver.url},
        json={"input_file_id": bad.json()["id"], "endpoint": "/v1/embeddings"},
        headers=headers,
    )
    assert failed.json()["status"] == "failed"
    failed_id = failed.json()["id"]

    async def failed_delivered():
        batch = (await gateway.get(f"/v1/batches/{failed_id}", headers=headers)).json()
        return batch["webhook"]["status"] == "delivered"

    await deliver_until(dispatcher, failed_delivered, timeout=30)
    assert json.loads(receiver.deliveries[-1].body)["status"] == "failed"


async def test_a_batch_callback_off_the_allow_list_is_refused(gateway, user):
    refused = await gateway.post(
        "/v1/batches",
        params={"callback_url": "http://10.1.2.3/hook"},
        json={"input_file_id": "file-x", "endpoint": "/v1/embeddings"},
        headers=await user(),
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["type"] == "permission_error"
