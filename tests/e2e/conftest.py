"""One Ray instance and one Serve instance for the whole e2e session, on loopback only, behind
the HTTP front door scripts/start.sh uses (Serve's HAProxy ingress).

Replicas read their settings from the environment they inherit from this process, so the
APP_* variables are set before Ray starts: a short ping interval, a test Redis database, and
a registry name of this session's own.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import AMQP_URL, REDIS_URL, service_missing
from tests.utils.net import free_port

PING_INTERVAL_S = 1.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def serve_url() -> Iterator[str]:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except Exception as exc:  # noqa: BLE001
        service_missing("Redis", exc)
    saved = dict(os.environ)
    # The front door of scripts/start.sh: Serve's HAProxy ingress, its files and ports this
    # session's own.
    import tempfile
    from pathlib import Path

    from scripts.ingress import haproxy_env

    os.environ.update(
        haproxy_env(
            Path(tempfile.mkdtemp(prefix="hap-", dir="/tmp")),
            metrics_port=free_port(),
            stats_port=free_port(),
            fallback_http_port=free_port(),
            fallback_grpc_port=free_port(),
        )
    )
    os.environ.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "APP_ENVIRONMENT": "test",
            "APP_REDIS_URL": REDIS_URL,
            "APP_AMQP_URL": AMQP_URL,
            "APP_REDIS_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
            # No APP_JWT_SECRET: as on the README's platform, the gateway makes its own key.
            # Every test signs up from 127.0.0.1, and many submit hundreds of tasks at once:
            # the quota tests give their users limits of their own.
            "APP_REGISTER_BURST": "100000",
            "APP_QUOTA_SUBMITS_PER_S": "-1",
            "APP_QUOTA_OPEN_STREAMS": "-1",
            "APP_PING_INTERVAL_S": str(PING_INTERVAL_S),
            "APP_PING_TIMEOUT_S": "1",
            "APP_MODEL_CACHE_TTL_S": "0",
            "APP_REGISTRY_NAME": f"registry-{uuid.uuid4().hex[:8]}",
            "APP_WEBHOOK_QUEUE": f"hooks-{uuid.uuid4().hex[:8]}",
            "APP_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            "APP_WEBHOOK_BACKOFF_S": "0.1",
            "APP_WEBHOOK_MAX_ATTEMPTS": "3",
            # The Open Inference Protocol over gRPC, on a port of this session's own.
            "APP_GRPC_PORT": str(free_port()),
        }
    )
    from app.core.settings import get_settings

    get_settings.cache_clear()

    import ray
    from ray import serve

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def gateway_url(serve_url: str) -> str:
    from ray import serve

    from app.main import build_gateway

    serve.run(build_gateway(), name="gateway", route_prefix="/")
    return serve_url


@pytest.fixture(scope="session")
def grpc_address(gateway_url: str) -> str:
    """Where the session's gateway serves the Open Inference Protocol over gRPC."""
    return f"127.0.0.1:{os.environ['APP_GRPC_PORT']}"


@pytest.fixture(scope="session")
def http(gateway_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def auth(http: httpx.Client) -> Callable[[], dict[str, str]]:
    def make() -> dict[str, str]:
        credentials = {"login": f"u{uuid.uuid4().hex[:12]}", "password": "long enough password"}
        assert http.post("/register", json=credentials).status_code == 201
        token = http.post("/login", json=credentials).json()["access_token"]
        return {"Authorization": f"Bearer {token}"}

    return make


@pytest.fixture(scope="session")
def admin_auth(http: httpx.Client) -> dict[str, str]:
    """Bearer headers of an admin, promoted with the command line as an operator does."""
    from tests.utils.e2e import promote

    credentials = {"login": f"admin{uuid.uuid4().hex[:10]}", "password": "long enough password"}
    assert http.post("/register", json=credentials).status_code == 201
    promote(credentials["login"])
    token = http.post("/login", json=credentials).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def deploy_model() -> Iterator[Callable[..., str]]:
    """Deploy a model app and delete it after the test; returns the model (= app) name."""
    from ray import serve

    from deployments.sdk import build_app

    deployed: list[str] = []

    def deploy(
        model_cls: type,
        name: str | None = None,
        overrides: dict[str, Any] | None = None,
        init: dict[str, Any] | None = None,
        **options: Any,
    ) -> str:
        app_name = name or f"{model_cls.__model_spec__.name}-{uuid.uuid4().hex[:6]}"
        options.setdefault("ray_actor_options", {"num_cpus": 0})
        serve.run(
            build_app(model_cls, model_name=app_name, overrides=overrides, init=init, **options),
            name=app_name,
            route_prefix=None,
        )
        if app_name not in deployed:
            deployed.append(app_name)
        return app_name

    yield deploy
    for app_name in deployed:
        serve.delete(app_name)
