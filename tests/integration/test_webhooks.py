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
from tests.utils.webhooks import Receiver


@pytest.fixture
async def dispatcher(settings, store, amqp):
    channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
    async with httpx.AsyncClient() as http:
        dispatcher = WebhookDispatcher(store, settings, http=http)
        await dispatcher.attach(channel)
        yield dispatcher
    queues = [settings.webhook_queue] + [
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
