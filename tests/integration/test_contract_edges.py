"""Contract cases at the edges: bad tokens, foreign tasks, bad parameters, protobuf answers for
unfinished and failed tasks, and the consumer's bad payload, bad response and timeout paths."""

from __future__ import annotations

import asyncio

import aio_pika
import pytest

from app.core.envelope import new_envelope
from deployments.echo import Echo
from deployments.iris import Iris
from deployments.sdk import model
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.iris_pb2 import IrisResponse


async def submit(gateway, headers, name, body):
    response = await gateway.post(f"/models/{name}/tasks", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


@pytest.mark.parametrize(
    "token",
    ["not.a.token", "Bearer-less", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"],
)
async def test_bad_token__401_on_every_task_route(gateway, user, deploy, token):
    headers = await user()
    model_ = await deploy(Echo())
    name = model_.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "x"})
    bad = {"Authorization": f"Bearer {token}"}
    for method, path, kwargs in [
        ("POST", f"/models/{name}/tasks", {"json": {"text": "x"}}),
        ("POST", f"/models/{name}/batches", {"json": [{"text": "x"}]}),
        ("GET", f"/models/{name}/result", {"params": {"task_id": task_id}}),
        ("GET", f"/models/{name}/tasks/{task_id}/events", {}),
        ("DELETE", f"/models/{name}/tasks/{task_id}", {}),
        ("GET", "/tasks", {}),
        ("GET", "/models", {}),
    ]:
        response = await gateway.request(method, path, headers=bad, **kwargs)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_result_of_another_models_task__404(gateway, user, deploy):
    headers = await user()
    echo, iris = await deploy(Echo()), await deploy(Iris())
    task_id = await submit(gateway, headers, echo.consumer.spec.name, {"text": "x"})
    response = await gateway.get(
        f"/models/{iris.consumer.spec.name}/result", params={"task_id": task_id}, headers=headers
    )
    assert response.status_code == 404 and response.json()["error"] == "task_not_found"


@pytest.mark.parametrize(
    "params",
    [
        {"task_id": ""},
        {"task_id": "x" * 65},
        {"task_id": "t", "wait": -1},
        {"task_id": "t", "wait": 301},
        {"task_id": "t", "wait": "soon"},
        {},
    ],
)
async def test_bad_result_parameters__422(gateway, user, deploy, params):
    headers = await user()
    model_ = await deploy(Echo())
    response = await gateway.get(
        f"/models/{model_.consumer.spec.name}/result", params=params, headers=headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_input"


async def test_accept_protobuf__pending_and_failed_answer_the_json_document(gateway, user, deploy):
    headers = await user()
    model_ = await deploy(Iris())
    name = model_.consumer.spec.name
    wants_protobuf = {**headers, "Accept": "application/x-protobuf"}
    pending = await submit(gateway, headers, name, {"sepal_length": 5.0})
    response = await gateway.get(
        f"/models/{name}/result", params={"task_id": pending}, headers=wants_protobuf
    )
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "pending"
    await model_.drain()  # sepal_width 0 is not a positive measurement: InvalidInput
    failed = await gateway.get(
        f"/models/{name}/result", params={"task_id": pending}, headers=wants_protobuf
    )
    assert failed.status_code == 200 and failed.headers["content-type"] == "application/json"
    assert failed.json()["status"] == "failed" and failed.json()["error_code"] == "invalid_input"
    good = await submit(
        gateway,
        headers,
        name,
        {"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2},
    )
    await model_.drain()
    done = await gateway.get(
        f"/models/{name}/result", params={"task_id": good}, headers=wants_protobuf
    )
    assert done.headers["content-type"] == "application/x-protobuf"
    assert IrisResponse.FromString(done.content).species == "setosa"


@model(name="misbehaving", request=EchoRequest, response=EchoResponse, timeout_s=0.2)
class Misbehaving:
    """Returns the wrong type when asked to, and hangs when asked to."""

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        if request.text == "wrong type":
            return IrisResponse(species="not an echo")  # type: ignore[return-value]
        if request.text == "hang":
            await asyncio.sleep(60)
        return EchoResponse(text=request.text)


async def _result(gateway, headers, name, task_id):
    return (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    ).json()


async def test_consumer_bad_response__failed_and_dead_lettered(gateway, user, deploy):
    headers = await user()
    model_ = await deploy(Misbehaving())
    name = model_.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "wrong type"})
    await model_.drain()
    document = await _result(gateway, headers, name, task_id)
    assert document["status"] == "failed" and document["error_code"] == "bad_response"
    assert "IrisResponse" in document["error"]
    assert await model_.queue_length(model_.names.dead_letter, expect=1) == 1


async def test_consumer_timeout__retried_then_failed(gateway, user, deploy):
    headers = await user()
    model_ = await deploy(Misbehaving(), max_attempts=2, retry_backoff_s=0.05)
    name = model_.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "hang"})
    for _ in range(100):
        await model_.drain()
        document = await _result(gateway, headers, name, task_id)
        if document["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    assert document["status"] == "failed" and document["error_code"] == "model_error"
    assert document["error"] == "process_request timed out" and document["attempts"] == 2


async def test_consumer_bad_payload__failed_and_dead_lettered(gateway, user, deploy, amqp, store):
    model_ = await deploy(Echo())
    name = model_.consumer.spec.name
    envelope = new_envelope(model=name, owner="someone", payload=b"\xff\xff\xff")
    channel = await amqp.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(envelope.SerializeToString()), routing_key=name
    )
    await channel.close()
    assert await model_.drain() == 1
    record = await store.get(envelope.task_id)
    assert record.status == "failed" and record.document().error_code == "bad_payload"
    assert await model_.queue_length(model_.names.dead_letter, expect=1) == 1
