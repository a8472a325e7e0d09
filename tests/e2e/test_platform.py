"""The platform on a real Ray Serve instance, driven over HTTP through Serve's proxy."""

from __future__ import annotations

import base64
import time

import pytest

from deployments.echo import Echo
from deployments.iris import Iris
from deployments.sdk import build_app
from deployments.summarizer import Summarizer
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.iris_pb2 import IrisRequest, IrisResponse
from tests.e2e.conftest import PING_INTERVAL_S
from tests.utils.e2e import finish_all, listed, submit, submit_all, wait_for, wait_result, when


def test_summarizer_and_iris_over_http(http, auth, deploy_model):
    headers = auth()
    summarizer = deploy_model(Summarizer)
    iris = deploy_model(Iris)
    text = "Queues absorb bursts. The sky is blue. Replicas follow the queue backlog of tasks."
    task = submit(
        http,
        headers,
        summarizer,
        {"file": {"content": base64.b64encode(text.encode()).decode()}, "author": "GRACE hopper"},
    )
    document = wait_result(http, headers, summarizer, task)
    assert document["status"] == "succeeded"
    assert document["result"]["fixed_author"] == "GRACE hopper (summarized by AI)"
    assert document["result"]["summary"] == text  # three sentences: all kept

    body = IrisRequest(sepal_length=5.0, sepal_width=3.4, petal_length=1.5, petal_width=0.2)
    response = http.post(
        f"/models/{iris}/tasks",
        content=body.SerializeToString(),
        headers={**headers, "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 202
    wait_result(http, headers, iris, response.json()["task_id"])
    raw = http.get(
        f"/models/{iris}/result",
        params={"task_id": response.json()["task_id"]},
        headers={**headers, "Accept": "application/x-protobuf"},
    )
    assert IrisResponse.FromString(raw.content).species == "setosa"


def test_model_deployed_after_gateway__listed_documented_usable_then_gone(http, auth, deploy_model):
    from ray import serve

    headers = auth()
    name = deploy_model(Echo)
    models = listed(http, headers)
    assert models[name]["instances"] == 1
    assert models[name]["request_type"] == "echo.EchoRequest"
    paths = http.get("/openapi.json").json()["paths"]
    assert f"/models/{name}/tasks" in paths and f"/models/{name}/result" in paths
    document = wait_result(http, headers, name, submit(http, headers, name, {"text": "hi"}))
    assert document["result"]["text"] == "hi"

    serve.delete(name)  # logs out on graceful stop, before any ping could notice
    assert name not in listed(http, headers)
    assert f"/models/{name}/tasks" not in http.get("/openapi.json").json()["paths"]


def test_two_replicas__every_task_gets_its_own_result(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Echo, num_replicas=2)
    wait_for(lambda: listed(http, headers)[name]["instances"] == 2)
    accepted = submit_all(http, headers, name, [f"task-{i}" for i in range(120)], delay_ms=20)
    documents = finish_all(http, headers, name, accepted)
    assert len({d["result"]["replica"] for d in documents}) == 2


def test_handle_call_runs_the_model_directly(deploy_model):
    from ray import serve

    name = deploy_model(Echo)
    handle = serve.get_app_handle(name)
    response = handle.remote(EchoRequest(text="direct")).result(timeout_s=30)
    assert isinstance(response, EchoResponse) and response.text == "direct"
    from_bytes = handle.remote(EchoRequest(text="bytes").SerializeToString()).result(timeout_s=30)
    assert from_bytes.text == "bytes"


def test_same_name_other_types__refused_and_first_keeps_working(http, auth, deploy_model):
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    headers = auth()
    name = deploy_model(Echo)
    # The same model name, other message types: the registry refuses, the replica fails.
    serve._run(
        build_app(Iris, model_name=name, ray_actor_options={"num_cpus": 0}),
        name=f"{name}-x",
        route_prefix=None,
        _blocking=False,
    )

    def failed():
        status = serve.status().applications.get(f"{name}-x")
        return status is not None and status.status == ApplicationStatus.DEPLOY_FAILED

    try:
        wait_for(failed, timeout=120, interval=1)
        deployment = serve.status().applications[f"{name}-x"].deployments[name]
        assert "is already registered with request echo.EchoRequest" in deployment.message
    finally:
        serve.delete(f"{name}-x")
    models = listed(http, headers)
    assert models[name]["request_type"] == "echo.EchoRequest"
    assert models[name]["instances"] == 1
    assert (
        wait_result(http, headers, name, submit(http, headers, name, {"text": "ok"}))["result"][
            "text"
        ]
        == "ok"
    )


def test_killed_replica__dropped_within_two_intervals_model_stays(http, auth, deploy_model):
    import ray

    headers = auth()
    name = deploy_model(Echo, num_replicas=2)

    def replica_ids() -> set[str]:
        body = http.get(f"/models/{name}", headers=headers).json()
        return {r["replica_id"] for r in body.get("replicas", [])}

    before = wait_for(lambda: when(replica_ids(), lambda ids: len(ids) == 2))
    victim = sorted(before)[0]
    actor = next(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve"
        and a["name"].startswith(f"SERVE_REPLICA::{name}#")
        and a["name"].endswith(victim)
    )
    ray.kill(ray.get_actor(actor, namespace="serve"), no_restart=True)
    # Serve starts a replacement; until it registers, one instance is left and the model stays:
    # the one that was not killed.
    left = wait_for(
        lambda: when(replica_ids(), lambda ids: len(ids) == 1),
        timeout=2 * PING_INTERVAL_S + 3,
        interval=0.1,
    )
    assert left == before - {victim}
    assert name in listed(http, headers)
    # The replacement registers: two instances again, one of them new.
    after = wait_for(lambda: when(replica_ids(), lambda ids: len(ids) == 2), timeout=60)
    assert victim not in after and len(after - before) == 1


def _registry_snapshot():
    """The registry's own snapshot (None while it restarts), not the gateway's view."""
    import asyncio

    from app.core.settings import get_settings
    from registry.client import RayRegistry

    settings = get_settings()
    registry = RayRegistry.from_settings(settings)
    try:
        return asyncio.run(registry.snapshot())
    except Exception:  # restarting
        return None


def _registry_incarnation() -> str:
    snapshot = _registry_snapshot()
    return snapshot.incarnation if snapshot is not None else ""


def _registry_knows(name: str) -> bool:
    snapshot = _registry_snapshot()
    return snapshot is not None and any(m.name == name for m in snapshot.models)


def test_registry_restart__heals_within_two_intervals(http, auth, deploy_model):
    import ray

    from app.core.settings import get_settings

    headers = auth()
    name = deploy_model(Echo)
    settings = get_settings()
    before = _registry_incarnation()
    assert before
    registry = ray.get_actor(settings.registry_name, namespace=settings.registry_namespace)
    ray.kill(registry, no_restart=False)  # Ray restarts it, empty
    # Really restarted: a new registry life, which at first knows no model.
    wait_for(lambda: _registry_incarnation() not in ("", before), timeout=30)
    wait_for(lambda: name in listed(http, headers), timeout=2 * PING_INTERVAL_S + 10)


def test_registry_killed_while_submitting__never_404(http, auth, deploy_model):
    import threading

    import ray

    from app.core.settings import get_settings

    headers = auth()
    name = deploy_model(Echo)
    settings = get_settings()
    statuses: list[int] = []
    missing_retry_after = 0
    stop = threading.Event()

    def stream() -> None:
        nonlocal missing_retry_after
        while not stop.is_set():
            response = http.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)
            statuses.append(response.status_code)
            if response.status_code == 503 and "Retry-After" not in response.headers:
                missing_retry_after += 1

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        wait_for(lambda: len(statuses) > 20)
        before = _registry_incarnation()
        ray.kill(
            ray.get_actor(settings.registry_name, namespace=settings.registry_namespace),
            no_restart=False,
        )
        wait_for(lambda: _registry_incarnation() not in ("", before), timeout=30)
        restarted = time.monotonic()
        # Keep submitting until the new registry itself knows echo (its replica re-registered:
        # the gateway's remembered list no longer carries it), and past the gateway's grace
        # for a young registry (3 intervals), so the last answers come from what it knows.
        wait_for(lambda: _registry_knows(name), timeout=2 * PING_INTERVAL_S + 10)
        grace_over = restarted + 3 * PING_INTERVAL_S + 1
        after = len(statuses)
        wait_for(lambda: time.monotonic() > grace_over and len(statuses) > after + 20)
    finally:
        stop.set()
        thread.join()
    assert 404 not in statuses, statuses.count(404)
    assert set(statuses) <= {202, 503}, set(statuses)
    assert missing_retry_after == 0
    assert statuses[-1] == 202


@pytest.mark.parametrize("endpoint", ["/health/live", "/health/ready", "/metrics", "/docs"])
def test_operational_endpoints(http, endpoint):
    assert http.get(endpoint).status_code == 200


def test_tokens_are_signed_with_the_platforms_own_key(http, auth):
    """No APP_JWT_SECRET is set here (as on the README's platform): the gateway made a key of
    its own. A token signed with the old built-in development value is refused, whatever
    login it names; the token the platform issued works."""
    import time
    import uuid

    import jwt

    login = f"u{uuid.uuid4().hex[:12]}"
    credentials = {"login": login, "password": "long enough password"}
    assert http.post("/register", json=credentials).status_code == 201
    issued = http.post("/login", json=credentials).json()["access_token"]
    assert http.get("/tasks", headers={"Authorization": f"Bearer {issued}"}).status_code == 200
    now = int(time.time())
    for key in ("change-me", "change-me-too"):
        forged = jwt.encode({"sub": login, "iat": now, "exp": now + 60}, key, algorithm="HS256")
        answer = http.get("/tasks", headers={"Authorization": f"Bearer {forged}"})
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"] == "unauthorized"
