"""One model, every way to call it, on a real Ray Serve: /infer through a handle to the
model's own replicas, the Open Inference Protocol with tritonclient, parameters from config,
and the cache of identical requests."""

from __future__ import annotations

import base64
import concurrent.futures

import numpy as np
import pytest

from deployments.echo import Echo
from deployments.iris import Iris
from deployments.summarizer import Summarizer
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.iris_pb2 import IrisRequest, IrisResponse
from tests.utils.e2e import listed, submit, wait_for, wait_result
from tests.utils.models import Counting

SETOSA = {"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2}
DOCUMENT = (
    "Ray Serve scales model replicas. Queues absorb bursts of work. The weather is nice. "
    "Results wait in Redis until clients fetch them. Replicas follow the queue backlog."
)


def infer(http, headers, name, body=None, **kwargs):
    return http.post(f"/models/{name}/infer", json=body, headers=headers, **kwargs)


def test_infer_each_example_model_json_and_protobuf(http, auth, deploy_model):
    headers = auth()
    iris, echo, summarizer = deploy_model(Iris), deploy_model(Echo), deploy_model(Summarizer)
    assert infer(http, headers, iris, SETOSA).json()["species"] == "setosa"
    raw = http.post(
        f"/models/{iris}/infer",
        content=IrisRequest(**SETOSA).SerializeToString(),
        headers={
            **headers,
            "Content-Type": "application/x-protobuf",
            "Accept": "application/x-protobuf",
        },
    )
    assert IrisResponse.FromString(raw.content).species == "setosa"
    answered = infer(http, headers, echo, {"text": "now"}).json()
    assert answered["text"] == "now" and answered["replica"]  # answered by a replica
    raw = http.post(
        f"/models/{echo}/infer",
        content=EchoRequest(text="bytes").SerializeToString(),
        headers={
            **headers,
            "Content-Type": "application/x-protobuf",
            "Accept": "application/x-protobuf",
        },
    )
    assert EchoResponse.FromString(raw.content).text == "bytes"
    body = {"file": {"content": base64.b64encode(DOCUMENT.encode()).decode()}, "author": "ada"}
    summary = infer(http, headers, summarizer, body).json()
    assert summary["fixed_author"] == "ada (summarized by AI)"
    assert "Replicas follow the queue backlog." in summary["summary"]


def test_infer_errors__422_502_504_503(http, auth, deploy_model):
    headers = auth()
    summarizer = deploy_model(Summarizer)
    refused = infer(http, headers, summarizer, {"author": "x"})
    assert refused.status_code == 422
    assert refused.json() == {"error": "invalid_input", "detail": "file.content must not be empty"}
    echo = deploy_model(
        Echo,
        overrides={"timeout_s": 0.5},
        max_ongoing_requests=1,
        max_queued_requests=1,
        num_replicas=1,
    )
    failed = infer(http, headers, echo, {"text": "x", "fail_with": "boom"})
    assert failed.status_code == 502 and failed.json()["detail"] == "RuntimeError: boom"
    slow = infer(http, headers, echo, {"text": "x", "delay_ms": 3000})
    assert slow.status_code == 504 and slow.json()["error"] == "model_timeout"
    # One call running, one waiting: a third finds no replica able to take it.
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        calls = list(
            pool.map(lambda _: infer(http, headers, echo, {"text": "x", "delay_ms": 400}), range(6))
        )
    statuses = sorted(c.status_code for c in calls)
    assert 503 in statuses and 200 in statuses, statuses
    busy = next(c for c in calls if c.status_code == 503)
    assert busy.json()["error"] == "model_unavailable" and "Retry-After" in busy.headers


def test_swagger_shows_three_operations_per_model(http, deploy_model):
    name = deploy_model(Iris)
    paths = http.get("/openapi.json").json()["paths"]
    operations = {
        paths[f"/models/{name}/{path}"][method]["operationId"]
        for path, method in (("tasks", "post"), ("result", "get"), ("infer", "post"))
    }
    assert operations == {f"submit_{name}", f"result_{name}", f"infer_{name}"}


def test_tritonclient_round_trip_on_iris(gateway_url, auth, deploy_model, http):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException

    headers = auth()
    iris = deploy_model(Iris)
    summarizer = deploy_model(Summarizer)
    client = triton.InferenceServerClient(gateway_url.removeprefix("http://"))
    assert client.is_server_live(headers=headers)
    assert client.is_model_ready(iris, headers=headers)
    metadata = client.get_model_metadata(iris, headers=headers)
    assert [i["name"] for i in metadata["inputs"]] == list(SETOSA)
    assert {i["datatype"] for i in metadata["inputs"]} == {"FP32"}
    assert metadata["versions"] == ["0"]
    for binary in (True, False):  # tritonclient's default (binary tensors), and JSON
        inputs = []
        for name, value in SETOSA.items():
            tensor = triton.InferInput(name, [1], "FP32")
            tensor.set_data_from_numpy(np.array([value], dtype=np.float32), binary_data=binary)
            inputs.append(tensor)
        outputs = [triton.InferRequestedOutput("species", binary_data=binary)]
        # A fresh dict per call: tritonclient writes Inference-Header-Content-Length into it.
        result = client.infer(iris, inputs, outputs=outputs, headers=dict(headers))
        species = result.as_numpy("species")
        assert [s.decode() if isinstance(s, bytes) else s for s in species] == ["setosa"]
    with pytest.raises(InferenceServerException, match="not flat"):
        client.get_model_metadata(summarizer, headers=headers)
    with pytest.raises(InferenceServerException, match="no input named"):
        client.infer(
            iris,
            [
                triton.InferInput("petals", [1], "FP32").set_data_from_numpy(
                    np.array([1.0], dtype=np.float32)
                )
            ],
            headers=headers,
        )
    with pytest.raises(InferenceServerException):
        client.get_model_metadata(iris)  # no bearer token
    client.close()


def _replica_names(app: str) -> set[str]:
    import ray

    return {
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and actor["name"].startswith(f"SERVE_REPLICA::{app}#")
    }


def _apply_config(app: str, user_config: dict[str, object]) -> None:
    """What `serve deploy serve_config.yaml` (scripts/deploy.sh) asks the Serve controller:
    the model's application from its import path, with config `args` and a `user_config`."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(
        {
            "applications": [
                {
                    "name": app,
                    "route_prefix": None,
                    "import_path": "deployments.summarizer:app",
                    "args": {"name": app, "init": {"max_sentences": 3}},
                    "deployments": [
                        {
                            "name": app,
                            "num_replicas": 1,
                            "user_config": user_config,
                            "ray_actor_options": {"num_cpus": 0},
                        }
                    ],
                }
            ]
        }
    )
    _get_global_client().deploy_apps(config, _blocking=True)


def test_user_config_change_applies_without_restarting_the_replica(http, auth):
    import uuid

    from ray import serve

    headers = auth()
    name = f"summarizer-{uuid.uuid4().hex[:6]}"
    body = {"file": {"content": base64.b64encode(DOCUMENT.encode()).decode()}, "author": "a"}
    try:
        _apply_config(name, {"max_sentences": 1})
        wait_for(lambda: infer(http, headers, name, body).status_code == 200)
        assert infer(http, headers, name, body).json()["summary"].count(".") == 1
        replicas = _replica_names(name)
        assert len(replicas) == 1
        _apply_config(name, {"max_sentences": 2})
        wait_for(lambda: infer(http, headers, name, body).json()["summary"].count(".") == 2)
        assert _replica_names(name) == replicas  # reconfigured in place, not replaced
    finally:
        serve.delete(name)


def test_bad_config_args__deploy_fails_naming_the_key():
    from deployments._runtime.application import application_from_args

    with pytest.raises(TypeError, match="max_sentence"):
        application_from_args(Summarizer, {"init": {"max_sentence": 2}})
    with pytest.raises(TypeError, match="max_replica"):
        application_from_args(Summarizer, {"settings": {"max_replica": 2}})
    with pytest.raises(TypeError, match="replicas"):
        application_from_args(Summarizer, {"replicas": 2})


def test_identical_submit_json_then_protobuf__cached_model_not_called(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Counting, overrides={"cache_ttl_s": 300})
    first = wait_result(http, headers, name, submit(http, headers, name, {"text": "same"}))
    assert first["result"]["replica"] == "calls=1" and first["cached"] is False
    again = http.post(
        f"/models/{name}/tasks",
        content=EchoRequest(text="same").SerializeToString(),
        headers={**headers, "Content-Type": "application/x-protobuf"},
    )
    cached = wait_result(http, headers, name, again.json()["task_id"])
    assert cached["cached"] is True and cached["result"]["replica"] == "calls=1"
    inferred = infer(http, headers, name, {"text": "same"}).json()
    assert inferred["replica"] == "calls=1"
    fresh = infer(http, headers, name, {"text": "different"}).json()
    assert fresh["replica"] == "calls=2"  # the model ran once more, for the new request only


def test_no_cache_ttl__every_request_runs(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(Counting)
    for expected in (1, 2):
        answer = wait_result(http, headers, name, submit(http, headers, name, {"text": "same"}))
        assert answer["cached"] is False and answer["result"]["replica"] == f"calls={expected}"


def test_a_settings_only_redeploy_reaches_the_gateway_while_an_old_instance_lingers(
    http, auth, deploy_model
):
    """Only `cache_ttl_s` changes; an instance of the old deployment stays registered (it keeps
    re-registering, as a replica of a rolling update does until it stops). The new setting
    shows in /models within an interval, and identical requests are answered from the cache."""
    import asyncio
    import threading

    from app.core.settings import get_settings
    from deployments._runtime.spec import effective_spec, model_info
    from registry.client import RayRegistry
    from registry.schemas import InstanceInfo

    headers = auth()
    name = deploy_model(Counting)
    assert listed(http, headers)[name]["cached"] is False
    settings = get_settings()
    registry = RayRegistry.from_settings(settings)
    old = model_info(effective_spec(Counting, {"name": name}))
    lingering = InstanceInfo(instance_id=f"lingering-{name}")
    stop = threading.Event()

    def linger() -> None:
        loop = asyncio.new_event_loop()
        while not stop.is_set():
            loop.run_until_complete(registry.register(old, lingering))
            stop.wait(0.2)
        loop.run_until_complete(registry.logout(name, lingering.instance_id))
        loop.close()

    thread = threading.Thread(target=linger, daemon=True)
    thread.start()
    try:
        wait_for(lambda: listed(http, headers)[name]["instances"] == 2, timeout=30)
        deploy_model(Counting, name=name, overrides={"cache_ttl_s": 300})
        wait_for(lambda: listed(http, headers)[name]["cached"] is True, timeout=30)
        assert listed(http, headers)[name]["instances"] >= 2  # the old one is still there
        first = wait_result(http, headers, name, submit(http, headers, name, {"text": "same"}))
        again = wait_result(http, headers, name, submit(http, headers, name, {"text": "same"}))
        assert first["cached"] is False and again["cached"] is True
        assert again["result"] == first["result"]
    finally:
        stop.set()
        thread.join(timeout=10)


def test_infer_to_a_replica_that_dies_mid_call__503_with_retry_after(http, auth, deploy_model):
    import threading

    import ray

    headers = auth()
    name = deploy_model(Echo, num_replicas=1)
    answers = []
    call = threading.Thread(
        target=lambda: answers.append(infer(http, headers, name, {"text": "x", "delay_ms": 5000}))
    )
    call.start()
    wait_for(lambda: _serve_busy(name), timeout=20, interval=0.05)  # the call is running
    replica = next(
        a["name"]
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["namespace"] == "serve" and a["name"].startswith(f"SERVE_REPLICA::{name}#")
    )
    ray.kill(ray.get_actor(replica, namespace="serve"), no_restart=True)
    call.join(timeout=60)
    [answer] = answers
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "model_unavailable" and answer.headers["Retry-After"]
    # Serve replaces the replica; calls work again.
    wait_for(lambda: infer(http, headers, name, {"text": "y"}).status_code == 200, timeout=60)


def _serve_busy(app: str) -> bool:
    """Whether the app's replica has a request running (Serve's own count)."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == "serve" and actor["name"].startswith(f"SERVE_REPLICA::{app}#"):
            replica = ray.get_actor(actor["name"], namespace="serve")
            try:
                metrics = ray.get(replica.get_num_ongoing_requests.remote(), timeout=5)
            except Exception:  # noqa: BLE001 - not there yet, or gone
                return False
            return bool(metrics)
    return False


def test_infer_to_a_model_scaled_to_zero_wakes_it(http, auth, deploy_model):
    headers = auth()
    name = deploy_model(
        Echo, overrides={"min_replicas": 0, "max_replicas": 1, "downscale_delay_s": 1}
    )
    wait_for(lambda: listed(http, headers).get(name, {}).get("instances") == 0, timeout=60)
    answer = infer(http, headers, name, {"text": "awake"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == "awake"
    assert listed(http, headers)[name]["instances"] == 1
