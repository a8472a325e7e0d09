"""Dependencies down: every route that needs one answers 503 with Retry-After, never 500; and
accounts survive a restart of a Redis run the way the scripts run it."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator

import httpx
import pytest

from app.main import create_app
from deployments.echo import Echo
from registry.client import RegistryUnavailable
from tests.utils.redis_server import RedisServer

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def client_for(settings, registry, **changes) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings=settings.model_copy(update=changes), registry=registry)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway"
        ) as client:
            yield client


async def sign_up(client: httpx.AsyncClient, login: str) -> dict[str, str]:
    credentials = {"login": login, "password": "long enough password"}
    assert (await client.post("/register", json=credentials)).status_code == 201
    token = (await client.post("/login", json=credentials)).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def test_accounts_survive_a_redis_restart(own_redis, settings, registry):
    credentials = {"login": "persistent", "password": "long enough password"}
    async for client in client_for(settings, registry, redis_url=own_redis.url):
        assert (await client.post("/register", json=credentials)).status_code == 201
    own_redis.stop()
    own_redis.start()
    async for client in client_for(settings, registry, redis_url=own_redis.url):
        response = await client.post("/login", json=credentials)
        assert response.status_code == 200, response.text
        taken = await client.post("/register", json=credentials)
        assert taken.status_code == 409


def routes(name: str, task_id: str) -> list[tuple[str, str, dict]]:
    body = {"json": {"text": "x"}}
    return [
        ("POST", "/register", {"json": {"login": "someone-new", "password": "long enough"}}),
        ("POST", "/login", {"json": {"login": "someone", "password": "long enough"}}),
        ("POST", f"/models/{name}/tasks", body),
        ("POST", f"/models/{name}/batches", {"json": [{"text": "x"}]}),
        ("GET", f"/models/{name}/result", {"params": {"task_id": task_id}}),
        ("GET", f"/models/{name}/result", {"params": {"task_id": task_id, "wait": 1}}),
        ("GET", f"/models/{name}/tasks/{task_id}/events", {}),
        ("DELETE", f"/models/{name}/tasks/{task_id}", {}),
        ("GET", "/tasks", {}),
        ("GET", "/health/ready", {}),
    ]


async def test_redis_down__every_route_that_needs_it_answers_503(
    own_redis, settings, registry, deploy
):
    model = await deploy(Echo())
    name = model.consumer.spec.name
    async for client in client_for(settings, registry, redis_url=own_redis.url):
        headers = await sign_up(client, "before-the-outage")
        accepted = await client.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)
        task_id = accepted.json()["task_id"]
        own_redis.stop()
        for method, path, kwargs in routes(name, task_id):
            response = await client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == 503, (method, path, response.status_code, response.text)
            assert "Retry-After" in response.headers or path == "/health/ready", path
            assert response.json().get("error", "unavailable") == "unavailable"
            assert "Traceback" not in response.text
        own_redis.start()


class DownRegistry:
    async def snapshot(self):
        raise RegistryUnavailable("down")

    async def report_metrics(self, source, metrics):
        raise RegistryUnavailable("down")

    async def metrics(self):
        raise RegistryUnavailable("down")


async def test_registry_down_from_the_start__model_routes_503_not_404(settings, user, gateway):
    headers = await user()  # an account made through a healthy gateway
    async for client in client_for(settings, DownRegistry()):
        for method, path, kwargs in [
            ("GET", "/models", {}),
            ("POST", "/models/echo/tasks", {"json": {"text": "x"}}),
            ("POST", "/models/echo/batches", {"json": [{"text": "x"}]}),
            ("GET", "/openapi.json", {}),
        ]:
            response = await client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == 503, (path, response.text)
            assert "Retry-After" in response.headers
