"""Fixtures over the real local Redis and RabbitMQ, with uuid-based names per test."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import aio_pika
import httpx
import pytest
from redis.asyncio import Redis

from app.admin import main as admin_cli
from app.core.broker import QueueNames
from app.core.errors import ModelUnavailable
from app.core.settings import Settings, get_settings
from app.inference.cache import ResultCache
from app.inference.outcome import InferOutcome, Outcome
from app.main import create_app
from app.tasks.store import ResultStore
from deployments._runtime.consumer import TaskConsumer, Webhooks
from deployments._runtime.spec import model_info
from deployments.sdk import ModelSpec, spec_of
from registry.schemas import InstanceInfo
from tests.conftest import AMQP_URL, REDIS_URL, service_missing
from tests.utils.factories import unique
from tests.utils.registry import LocalRegistry

pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", exc)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def amqp() -> AsyncIterator[aio_pika.abc.AbstractRobustConnection]:
    try:
        connection = await aio_pika.connect_robust(AMQP_URL, timeout=5)
    except Exception as exc:  # noqa: BLE001
        service_missing("RabbitMQ", exc)
    yield connection
    await connection.close()


@pytest.fixture
def settings(redis: Redis) -> Settings:
    return Settings(
        environment="test",
        redis_url=REDIS_URL,
        amqp_url=AMQP_URL,
        redis_prefix=unique("t"),
        jwt_secret="integration-secret-that-is-long-enough-0123456789",
        io_timeout_s=3,
        model_cache_ttl_s=0,
        webhook_queue=unique("hooks"),
        webhook_allowed_hosts=["127.0.0.1"],
        webhook_backoff_s=0.05,
    )


@pytest.fixture
async def store(settings: Settings, redis: Redis) -> AsyncIterator[ResultStore]:
    result_store = ResultStore(redis, prefix=settings.redis_prefix, ttl_s=settings.result_ttl_s)
    yield result_store


@pytest.fixture
def registry() -> LocalRegistry:
    return LocalRegistry()


class LocalReplicas:
    """Synchronous calls answered by the consumers `deploy` started (a Serve handle stand-in)."""

    def __init__(self) -> None:
        self.consumers: dict[str, TaskConsumer] = {}

    async def infer(self, view: Any, payload: bytes, timeout_s: float) -> InferOutcome:
        consumer = self.consumers.get(view.name)
        if consumer is None:
            raise ModelUnavailable(f"model {view.name!r} has no replica here")
        try:
            return await asyncio.wait_for(consumer.answer(payload), timeout_s)
        except TimeoutError:
            return InferOutcome(Outcome.TIMEOUT, error=f"no answer within {timeout_s:g}s")

    async def stream(self, view: Any, payload: bytes) -> AsyncIterator[InferOutcome]:
        consumer = self.consumers.get(view.name)
        if consumer is None:
            raise ModelUnavailable(f"model {view.name!r} has no replica here")
        async for outcome in consumer.answer_stream(payload):
            yield outcome


@pytest.fixture
def replicas() -> LocalReplicas:
    return LocalReplicas()


@pytest.fixture
async def gateway_app(
    settings: Settings, registry: LocalRegistry, replicas: LocalReplicas
) -> AsyncIterator[Any]:
    app = create_app(settings=settings, registry=registry, replicas=replicas)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def services(gateway_app: Any) -> Any:
    """The in-process gateway's `Services` (its subscriber, its store, its metrics)."""
    return gateway_app.state.services


@pytest.fixture
async def gateway(gateway_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=gateway_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield client


@pytest.fixture
async def user(gateway: httpx.AsyncClient) -> Callable[..., Any]:
    """Register and log in a user; returns auth headers. Call again for another user."""

    async def make(login: str | None = None) -> dict[str, str]:
        login = login or unique("user")
        credentials = {"login": login, "password": "long enough password"}
        assert (await gateway.post("/register", json=credentials)).status_code == 201
        response = await gateway.post("/login", json=credentials)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    return make


@pytest.fixture
async def admin(user, settings, monkeypatch):
    """An admin promoted with the command line, as an operator does."""
    login = unique("admin")
    headers = await user(login)
    monkeypatch.setenv("APP_REDIS_URL", str(settings.redis_url))
    monkeypatch.setenv("APP_REDIS_PREFIX", settings.redis_prefix)
    get_settings.cache_clear()
    get_settings.cache_clear()
    assert await asyncio.to_thread(admin_cli, ["promote", login]) == 0
    yield headers
    get_settings.cache_clear()  # the next test reads its own environment


class ModelHarness:
    """A model's consumer on real queues, in burst mode, registered in the local registry."""

    def __init__(self, consumer: TaskConsumer, channel: Any) -> None:
        self.consumer = consumer
        self.channel = channel
        self.names = consumer.names

    async def drain(self) -> int:
        return await self.consumer.run_until_empty()

    async def run(self) -> None:
        """Consume continuously (until the test ends), as a replica does."""
        await self.consumer.start()

    @contextlib.asynccontextmanager
    async def hearing_cancels(self, redis_url: str) -> AsyncIterator[None]:
        """Inside the block, stop running tasks on cancel requests, as a replica does (its
        cancel channel listener)."""
        from deployments._runtime.cancellation import CancelListener

        consumer = self.consumer
        listener = CancelListener(
            redis_url, consumer.store.cancel_channel(consumer.spec.name), consumer.cancel
        )
        listener.start()
        try:
            yield
        finally:
            await listener.close()

    async def queue_length(self, name: str, *, expect: int | None = None) -> int:
        """Messages ready in `name`; with `expect`, wait up to 5 s for that count (dead-lettering
        happens in the broker, a moment after the reject)."""
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            queue = await self.channel.declare_queue(name, passive=True)
            await queue.declare()
            count = int(queue.declaration_result.message_count)
            if expect is None or count == expect or asyncio.get_running_loop().time() > deadline:
                return count
            await asyncio.sleep(0.05)


@pytest.fixture
async def deploy(
    amqp: aio_pika.abc.AbstractRobustConnection,
    store: ResultStore,
    registry: LocalRegistry,
    settings: Settings,
    replicas: LocalReplicas,
) -> AsyncIterator[Callable[..., Any]]:
    """Start a consumer for a model class (or a spec plus model instance) under a unique name."""
    created: list[ModelHarness] = []

    async def make(
        model: Any, *, spec: ModelSpec | None = None, name: str | None = None, **overrides: Any
    ) -> ModelHarness:
        base = spec or spec_of(type(model))
        real_spec = dataclasses.replace(
            base,
            name=name or unique(base.name),
            settings=base.settings.replace("test", overrides),
        )
        channel = await amqp.channel(publisher_confirms=True, on_return_raises=True)
        consumer = TaskConsumer(
            real_spec,
            model,
            store,
            publish_timeout_s=3,
            webhooks=Webhooks(settings.webhook_queue, settings.webhook_max_attempts),
            progress_interval_s=0,
            cache=ResultCache(store.redis, prefix=settings.redis_prefix, max_entry_bytes=1 << 20),
        )
        replicas.consumers[real_spec.name] = consumer
        await consumer.attach(channel, prefetch=16)
        await registry.register(model_info(real_spec), InstanceInfo(instance_id=unique("i")))
        harness = ModelHarness(consumer, channel)
        created.append(harness)
        return harness

    yield make
    for harness in created:
        await harness.consumer.stop(drain_timeout_s=5)
        names = harness.names
        queues = [names.work, names.dead_letter] + [
            names.retry(n) for n in range(1, harness.consumer.settings.max_attempts)
        ]
        for queue in queues:
            try:
                await harness.channel.queue_delete(queue)
            except Exception:  # noqa: BLE001, S110
                pass
        await harness.channel.close()


__all__ = ["ModelHarness", "QueueNames"]
