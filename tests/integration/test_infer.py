"""Synchronous calls and the cache of identical requests, gateway to consumer, on real Redis."""

from __future__ import annotations

import asyncio

import pytest

from deployments.echo import Echo
from deployments.iris import Iris
from deployments.summarizer import Summarizer
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.iris_pb2 import IrisRequest, IrisResponse
from tests.utils.models import Counting

SETOSA = {"sepal_length": 5.0, "sepal_width": 3.4, "petal_length": 1.5, "petal_width": 0.2}


async def test_infer_json_and_protobuf(gateway, user, deploy):
    headers = await user()
    model = await deploy(Iris())
    name = model.consumer.spec.name
    as_json = await gateway.post(f"/models/{name}/infer", json=SETOSA, headers=headers)
    assert as_json.status_code == 200, as_json.text
    assert as_json.json()["species"] == "setosa"
    as_proto = await gateway.post(
        f"/models/{name}/infer",
        content=IrisRequest(**SETOSA).SerializeToString(),
        headers={
            **headers,
            "Content-Type": "application/x-protobuf",
            "Accept": "application/x-protobuf",
        },
    )
    assert as_proto.headers["content-type"] == "application/x-protobuf"
    assert IrisResponse.FromString(as_proto.content).species == "setosa"
    assert await model.queue_length(model.names.work) == 0  # no task, no queue


async def test_infer_errors_in_the_one_error_shape(gateway, user, deploy):
    headers = await user()
    summarizer = await deploy(Summarizer())
    refused = await gateway.post(
        f"/models/{summarizer.consumer.spec.name}/infer", json={"author": "x"}, headers=headers
    )
    assert refused.status_code == 422
    assert refused.json() == {"error": "invalid_input", "detail": "file.content must not be empty"}
    echo = await deploy(Echo(), timeout_s=0.3)
    name = echo.consumer.spec.name
    failed = await gateway.post(
        f"/models/{name}/infer", json={"text": "x", "fail_with": "boom"}, headers=headers
    )
    assert failed.status_code == 502
    assert failed.json() == {"error": "model_error", "detail": "RuntimeError: boom"}
    slow = await gateway.post(
        f"/models/{name}/infer", json={"text": "x", "delay_ms": 5000}, headers=headers
    )
    assert slow.status_code == 504 and slow.json()["error"] == "model_timeout"
    unknown = await gateway.post("/models/nope/infer", json={}, headers=headers)
    assert unknown.status_code == 404
    assert (await gateway.post(f"/models/{name}/infer", json={})).status_code == 401


async def test_infer_without_a_replica__503(gateway, user, deploy, replicas):
    headers = await user()
    model = await deploy(Echo())
    replicas.consumers.clear()
    response = await gateway.post(
        f"/models/{model.consumer.spec.name}/infer", json={"text": "x"}, headers=headers
    )
    assert response.status_code == 503 and "Retry-After" in response.headers


async def test_cache__identical_submit_as_json_then_protobuf_is_cached_and_not_run(
    gateway, user, deploy
):
    headers = await user()
    model = await deploy(Counting(), cache_ttl_s=60)
    name = model.consumer.spec.name
    calls = Counting.calls
    first = await gateway.post(f"/models/{name}/tasks", json={"text": "same"}, headers=headers)
    await model.drain()
    assert Counting.calls == calls + 1
    again = await gateway.post(
        f"/models/{name}/tasks",
        content=EchoRequest(text="same").SerializeToString(),
        headers={**headers, "Content-Type": "application/x-protobuf"},
    )
    assert again.status_code == 202
    assert await model.queue_length(model.names.work) == 0  # nothing published
    document = (
        await gateway.get(
            f"/models/{name}/result", params={"task_id": again.json()["task_id"]}, headers=headers
        )
    ).json()
    assert document["status"] == "succeeded" and document["cached"] is True
    assert document["result"]["text"] == "same"
    assert document["model_version"] == "0"
    first_document = (
        await gateway.get(
            f"/models/{name}/result", params={"task_id": first.json()["task_id"]}, headers=headers
        )
    ).json()
    assert first_document["cached"] is False
    # /infer answers from the cache too; a different request misses.
    inferred = await gateway.post(f"/models/{name}/infer", json={"text": "same"}, headers=headers)
    assert inferred.json()["text"] == "same" and Counting.calls == calls + 1
    other = await gateway.post(f"/models/{name}/infer", json={"text": "other"}, headers=headers)
    assert other.json()["text"] == "other" and Counting.calls == calls + 2


@pytest.mark.parametrize("change", ["version", "fingerprint"])
async def test_cache__a_new_version_or_schema_never_gets_an_old_answer(
    gateway, user, deploy, registry, change
):
    import dataclasses

    from deployments._runtime.spec import model_info
    from registry.schemas import InstanceInfo

    headers = await user()
    model = await deploy(Counting(), cache_ttl_s=60)
    name = model.consumer.spec.name
    calls = Counting.calls
    await gateway.post(f"/models/{name}/tasks", json={"text": "same"}, headers=headers)
    await model.drain()
    hit = await gateway.post(f"/models/{name}/infer", json={"text": "same"}, headers=headers)
    assert hit.status_code == 200 and Counting.calls == calls + 1  # answered from the cache
    # A redeploy registers: same name and messages, another version (or changed descriptors).
    newer = dataclasses.replace(
        model_info(model.consumer.spec), **{change: "changed", "cache_ttl_s": 60.0}
    )
    await registry.register(newer, InstanceInfo(instance_id="newer"))
    listed = {m["name"]: m for m in (await gateway.get("/models", headers=headers)).json()}
    assert listed[name]["version"] == ("changed" if change == "version" else "0")
    miss = await gateway.post(f"/models/{name}/infer", json={"text": "same"}, headers=headers)
    assert miss.status_code == 200 and Counting.calls == calls + 2  # the model ran again
    submitted = await gateway.post(f"/models/{name}/tasks", json={"text": "same"}, headers=headers)
    await model.drain()
    document = (
        await gateway.get(
            f"/models/{name}/result",
            params={"task_id": submitted.json()["task_id"]},
            headers=headers,
        )
    ).json()
    assert document["cached"] is False and Counting.calls == calls + 3


async def test_cache__never_filled_from_a_failure(gateway, user, deploy):
    headers = await user()
    model = await deploy(Counting(), cache_ttl_s=60)
    name = model.consumer.spec.name
    calls = Counting.calls
    for _ in range(2):
        response = await gateway.post(
            f"/models/{name}/infer", json={"text": "x", "fail_with": "no"}, headers=headers
        )
        assert response.status_code == 422
    assert Counting.calls == calls + 2


async def test_cache__bypassed_for_a_model_without_cache_ttl(gateway, user, deploy):
    headers = await user()
    model = await deploy(Counting())
    name = model.consumer.spec.name
    calls = Counting.calls
    for _ in range(2):
        await gateway.post(f"/models/{name}/tasks", json={"text": "same"}, headers=headers)
    assert await model.drain() == 2
    await gateway.post(f"/models/{name}/infer", json={"text": "same"}, headers=headers)
    assert Counting.calls == calls + 3


async def test_cache__batch_mixes_hits_and_misses_in_order(gateway, user, deploy):
    headers = await user()
    model = await deploy(Counting(), cache_ttl_s=60)
    name = model.consumer.spec.name
    await gateway.post(f"/models/{name}/infer", json={"text": "known"}, headers=headers)
    response = await gateway.post(
        f"/models/{name}/batches", json=[{"text": "new"}, {"text": "known"}], headers=headers
    )
    ids = response.json()["task_ids"]
    assert await model.drain() == 1  # only the miss was queued
    documents = [
        (await gateway.get(f"/models/{name}/result", params={"task_id": i}, headers=headers)).json()
        for i in ids
    ]
    assert [d["result"]["text"] for d in documents] == ["new", "known"]
    assert [d["cached"] for d in documents] == [False, True]


async def test_model_version_in_models_and_documents(gateway, user, deploy):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    listed = {m["name"]: m for m in (await gateway.get("/models", headers=headers)).json()}
    assert listed[name]["version"] == "0"
    response = await gateway.post(f"/models/{name}/tasks", json={"text": "v"}, headers=headers)
    task_id = response.json()["task_id"]
    await model.drain()
    document = (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    ).json()
    assert document["model_version"] == "0"
    assert isinstance(EchoResponse(), EchoResponse)
    await asyncio.sleep(0)
