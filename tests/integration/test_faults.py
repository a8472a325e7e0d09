"""Redis or RabbitMQ out of reach: clean 503s, nothing half-made, nothing acked unrecorded."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.core.settings import Settings
from app.main import create_app
from app.tasks.store import ResultStore
from deployments.echo import Echo
from tests.utils.registry import LocalRegistry

# Ports nothing listens on: connections are refused at once, like a stopped server.
DEAD_REDIS = "redis://127.0.0.1:9/0"
DEAD_AMQP = "amqp://guest:guest@127.0.0.1:9/"


async def gateway_with(settings: Settings, registry: LocalRegistry, **changes) -> AsyncIterator:
    app = create_app(settings=settings.model_copy(update=changes), registry=registry)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            yield client


@pytest.fixture
async def broken_broker_gateway(settings, registry):
    async for client in gateway_with(settings, registry, amqp_url=DEAD_AMQP):
        yield client


@pytest.fixture
async def broken_store_gateway(settings, registry):
    async for client in gateway_with(settings, registry, redis_url=DEAD_REDIS):
        yield client


async def test_broker_down__503_with_retry_after_and_the_task_marked_not_accepted(
    gateway, broken_broker_gateway, user, deploy, store, redis, settings
):
    headers = await user()
    model = await deploy(Echo())
    started = time.monotonic()
    response = await broken_broker_gateway.post(
        f"/models/{model.consumer.spec.name}/tasks", json={"text": "x"}, headers=headers
    )
    assert time.monotonic() - started < settings.io_timeout_s + 2
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert int(response.headers["Retry-After"]) > 0
    # The record stays, failed, so that no copy of the message could ever run.
    keys = [k async for k in redis.scan_iter(f"{settings.redis_prefix}:task:*")]
    assert len(keys) == 1
    record = await store.get(keys[0].decode().rsplit(":", 1)[1])
    assert record.status == "failed" and record.document().error_code == "not_accepted"
    ready = await broken_broker_gateway.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["rabbitmq"] == "down"


async def test_store_down__503_and_nothing_published(gateway, broken_store_gateway, user, deploy):
    headers = await user()  # registered through the healthy gateway
    model = await deploy(Echo())
    response = await broken_store_gateway.post(
        f"/models/{model.consumer.spec.name}/tasks", json={"text": "x"}, headers=headers
    )
    assert response.status_code == 503
    assert response.json() == {"error": "unavailable", "detail": "the result store is unavailable"}
    assert "Retry-After" in response.headers
    assert await model.queue_length(model.names.work) == 0
    ready = await broken_store_gateway.get("/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("down")


async def test_consumer_cannot_write__task_requeued_not_acked(gateway, user, deploy, store):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (
        await gateway.post(f"/models/{name}/tasks", json={"text": "kept"}, headers=headers)
    ).json()["task_id"]

    healthy_store = model.consumer.store
    model.consumer.store = ResultStore.from_url(DEAD_REDIS, prefix="x", ttl_s=60, timeout_s=1)
    message = await model.consumer._queue.get(no_ack=False)
    await model.consumer.handle(message)
    assert model.consumer.stats.requeued == 1 and model.consumer.stats.succeeded == 0
    assert await model.queue_length(model.names.work, expect=1) == 1

    model.consumer.store = healthy_store
    assert await model.drain() == 1
    document = (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    ).json()
    assert document["status"] == "succeeded" and document["result"]["text"] == "kept"
