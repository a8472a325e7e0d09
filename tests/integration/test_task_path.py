"""Gateway (in-process) → real RabbitMQ → consumer (burst mode) → real Redis → gateway."""

from __future__ import annotations

import base64
import json

import aio_pika
import pytest

from deployments.echo import Echo
from deployments.iris import Iris
from deployments.summarizer import Summarizer
from protos.echo_pb2 import EchoRequest
from protos.example_pb2 import ExampleModelResponse
from protos.iris_pb2 import IrisRequest, IrisResponse

DOCUMENT = (
    "Ray Serve is a scalable model serving library. It is framework agnostic. "
    "The platform adds queues to Ray Serve so that long tasks do not block clients. "
    "Results are stored in Redis. The weather was nice yesterday. "
    "Queues let Ray Serve replicas scale with the backlog of tasks."
)


async def submit(gateway, headers, model, **kwargs):
    response = await gateway.post(f"/models/{model}/tasks", headers=headers, **kwargs)
    return response


async def result(gateway, headers, model, task_id, **kwargs):
    return await gateway.get(
        f"/models/{model}/result", params={"task_id": task_id}, headers=headers, **kwargs
    )


async def test_summarizer_json__pending_then_succeeded(gateway, user, deploy):
    headers = await user()
    model = await deploy(Summarizer())
    body = {
        "file": {"content": base64.b64encode(DOCUMENT.encode()).decode()},
        "author": "ada  LOVELACE",
    }

    accepted = await submit(gateway, headers, model.consumer.spec.name, json=body)
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "pending"
    task_id = accepted.json()["task_id"]

    waiting = await result(gateway, headers, model.consumer.spec.name, task_id)
    assert waiting.status_code == 202
    assert waiting.json()["status"] == "pending"

    assert await model.drain() == 1
    done = await result(gateway, headers, model.consumer.spec.name, task_id)
    assert done.status_code == 200
    document = done.json()
    assert document["status"] == "succeeded"
    assert document["attempts"] == 1
    assert document["result"]["fixed_author"] == "ada LOVELACE (summarized by AI)"
    assert "queues" in document["result"]["summary"].lower()
    assert "weather" not in document["result"]["summary"]
    assert document["created_at"] <= document["started_at"] <= document["finished_at"]


async def test_iris_protobuf_in_and_out(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    request = IrisRequest(sepal_length=6.7, sepal_width=3.0, petal_length=5.2, petal_width=2.3)
    accepted = await submit(
        gateway,
        {**headers, "Content-Type": "application/x-protobuf"},
        name,
        content=request.SerializeToString(),
    )
    assert accepted.status_code == 202, accepted.text
    await model.drain()
    done = await result(
        gateway, {**headers, "Accept": "application/x-protobuf"}, name, accepted.json()["task_id"]
    )
    assert done.status_code == 200
    assert done.headers["content-type"] == "application/x-protobuf"
    response = IrisResponse.FromString(done.content)
    assert response.species == "virginica"
    assert sum(response.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


async def test_summarizer_protobuf_result_matches_json(gateway, user, deploy):
    headers = await user()
    model = await deploy(Summarizer())
    name = model.consumer.spec.name
    body = {"file": {"content": base64.b64encode(b"One sentence only.").decode()}, "author": "x"}
    task_id = (await submit(gateway, headers, name, json=body)).json()["task_id"]
    await model.drain()
    as_json = (await result(gateway, headers, name, task_id)).json()["result"]
    as_proto = ExampleModelResponse.FromString(
        (
            await result(gateway, {**headers, "Accept": "application/x-protobuf"}, name, task_id)
        ).content
    )
    assert as_json == {"summary": as_proto.summary, "fixed_author": as_proto.fixed_author}
    assert as_proto.summary == "One sentence only."


async def test_when_model_raises_invalid_input__then_failed_at_once(gateway, user, deploy):
    headers = await user()
    model = await deploy(Summarizer())
    name = model.consumer.spec.name
    task_id = (await submit(gateway, headers, name, json={"author": "x"})).json()["task_id"]
    await model.drain()
    document = (await result(gateway, headers, name, task_id)).json()
    assert document["status"] == "failed"
    assert document["error_code"] == "invalid_input"
    assert document["error"] == "file.content must not be empty"
    assert document["attempts"] == 1
    assert await model.queue_length(model.names.dead_letter) == 0


async def test_when_model_raises__then_retried_then_failed_and_dead_lettered(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo(), max_attempts=3, retry_backoff_s=0.05)
    name = model.consumer.spec.name
    task_id = (
        await submit(gateway, headers, name, json={"text": "hi", "fail_with": "boom"})
    ).json()["task_id"]
    import asyncio

    for _ in range(100):
        await model.drain()
        document = (await result(gateway, headers, name, task_id)).json()
        if document["status"] == "failed":
            break
        await asyncio.sleep(0.05)
    assert document["status"] == "failed"
    assert document["error"] == "RuntimeError: boom"
    assert document["error_code"] == "model_error"
    assert document["attempts"] == 3
    assert await model.queue_length(model.names.dead_letter, expect=1) == 1


async def test_garbage_on_queue__dead_lettered_and_consumer_keeps_serving(
    gateway, user, deploy, amqp
):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    channel = await amqp.channel()
    await channel.default_exchange.publish(aio_pika.Message(b"\xff\x00garbage"), routing_key=name)
    task_id = (await submit(gateway, headers, name, json={"text": "after"})).json()["task_id"]
    assert await model.drain() == 2
    assert await model.queue_length(model.names.dead_letter, expect=1) == 1
    document = (await result(gateway, headers, name, task_id)).json()
    assert document["status"] == "succeeded"
    assert document["result"]["text"] == "after"
    await channel.close()


async def test_redelivered_finished_task__acked_without_running_again(store, deploy, amqp):
    from app.core.envelope import new_envelope

    model = await deploy(Echo())
    name = model.consumer.spec.name
    envelope = new_envelope(
        model=name, owner="u", payload=EchoRequest(text="a").SerializeToString()
    )
    channel = await amqp.channel()
    for _ in range(2):  # the same task delivered twice, as after a lost ack
        await channel.default_exchange.publish(
            aio_pika.Message(envelope.SerializeToString()), routing_key=name
        )
    assert await model.drain() == 2
    assert model.consumer.stats.succeeded == 1
    record = await store.get(envelope.task_id)
    assert record is not None and record.status == "succeeded"
    await channel.close()


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"json": {"author": 5}}, 422, "invalid_input"),
        ({"json": {"no_such_field": 1}}, 422, "invalid_input"),
        ({"json": {"file": {"content": "!!not base64!!"}}}, 422, "invalid_input"),
        ({"json": [1, 2]}, 422, "invalid_input"),
        (
            {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "bad_request",
        ),
        (
            {"content": b"\xff\xff\xff", "headers": {"Content-Type": "application/x-protobuf"}},
            400,
            "bad_request",
        ),
        (
            {"content": b"x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
    ],
)
async def test_bad_bodies__4xx_with_error_shape(gateway, user, deploy, kwargs, status, code):
    headers = await user()
    model = await deploy(Summarizer())
    extra = kwargs.pop("headers", {})
    response = await submit(gateway, {**headers, **extra}, model.consumer.spec.name, **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert response.json()["detail"]
    assert await model.queue_length(model.names.work) == 0


async def test_json_mismatch__names_the_field(gateway, user, deploy):
    headers = await user()
    model = await deploy(Summarizer())
    response = await submit(gateway, headers, model.consumer.spec.name, json={"author": 5})
    assert "author" in response.json()["detail"]


async def test_unknown_model__404(gateway, user):
    headers = await user()
    response = await submit(gateway, headers, "no-such-model", json={})
    assert response.status_code == 404
    assert response.json()["error"] == "model_not_found"


async def test_unknown_task__404(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    response = await result(gateway, headers, model.consumer.spec.name, "nope")
    assert response.status_code == 404
    assert response.json()["error"] == "task_not_found"


async def test_models_list_shows_registered_model(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    listed = (await gateway.get("/models", headers=headers)).json()
    entry = next(m for m in listed if m["name"] == model.consumer.spec.name)
    assert entry["request_type"] == "iris.IrisRequest"
    assert entry["response_type"] == "iris.IrisResponse"
    assert entry["instances"] == 1
    assert entry["queue_length"] == 0
    assert entry["description"].startswith("Classifies an iris flower")


async def test_result_long_poll_returns_when_done(gateway, user, deploy):
    import asyncio

    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (await submit(gateway, headers, name, json={"text": "x"})).json()["task_id"]
    poll = asyncio.create_task(
        gateway.get(
            f"/models/{name}/result", params={"task_id": task_id, "wait": 5}, headers=headers
        )
    )
    await asyncio.sleep(0.2)
    await model.drain()
    response = await poll
    assert response.status_code == 200
    assert json.loads(response.text)["status"] == "succeeded"


async def test_every_third_task_raising__failed_after_attempts_in_dlq_others_succeed(
    gateway, user, deploy
):
    import asyncio

    headers = await user()
    model = await deploy(Echo(), max_attempts=2, retry_backoff_s=0.05)
    name = model.consumer.spec.name
    bodies = [{"text": f"t{i}", "fail_with": "every third" if i % 3 == 2 else ""} for i in range(9)]
    ids = [(await submit(gateway, headers, name, json=body)).json()["task_id"] for body in bodies]
    documents: list[dict] = []
    for _ in range(100):
        await model.drain()
        documents = [(await result(gateway, headers, name, i)).json() for i in ids]
        if all(d["status"] in ("succeeded", "failed") for d in documents):
            break
        await asyncio.sleep(0.05)
    for i, document in enumerate(documents):
        if i % 3 == 2:
            assert document["status"] == "failed"
            assert document["error"] == "RuntimeError: every third"
            assert document["attempts"] == 2
        else:
            assert document["status"] == "succeeded"
            assert document["result"]["text"] == f"t{i}"
    assert await model.queue_length(model.names.dead_letter, expect=3) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"sepal_length": True},  # json_format alone takes a bool for a number
        {"sepal_length": "1.5"},  # and a numeric string
        {"sepal_length": 5.0, "sepalLength": 6.0},  # and both spellings of one field
    ],
)
async def test_json_the_schema_refuses_is_refused_even_if_json_format_would_take_it(
    gateway, user, deploy, body
):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    for path, payload in ((f"/models/{name}/tasks", body), (f"/models/{name}/batches", [body])):
        response = await gateway.post(path, json=payload, headers=headers)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"] == "invalid_input"
    assert await model.queue_length(model.names.work) == 0


async def test_json_the_schema_accepts_is_accepted(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    body = {"sepalLength": 5.1, "sepal_width": None, "petal_length": "NaN", "petalWidth": 1}
    response = await gateway.post(f"/models/{name}/tasks", json=body, headers=headers)
    assert response.status_code == 202, response.text
