"""The OpenAI-compatible API (/v1), driven by the official `openai` package against the
in-process gateway: real Redis and RabbitMQ, a model consumer in this process."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import pytest

from app.sharing.limits import LimitOverrides
from deployments.echo import Echo
from tests.utils.models import HashingEmbedder


@pytest.fixture
def client(gateway_app):
    """An `openai.AsyncOpenAI` for a user's token, talking to the in-process gateway."""
    made = []

    def make(headers):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway_app))
        made.append(http)
        return openai.AsyncOpenAI(
            base_url="http://gateway/v1",
            api_key=headers["Authorization"].removeprefix("Bearer "),
            http_client=http,
            max_retries=0,
        )

    return make


async def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
    return result


def jsonl(lines):
    return ("\n".join(json.dumps(line) for line in lines) + "\n").encode()


def embedding_line(custom_id, model, text, **body):
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": model, "input": text, **body},
    }


async def test_models_and_embeddings_match_infer(gateway, user, deploy, client):
    headers = await user()
    model = await deploy(HashingEmbedder())
    name = model.consumer.spec.name
    oai = client(headers)
    listed = [m.id async for m in oai.models.list()]
    assert name in listed
    assert (await oai.models.retrieve(name)).id == name

    direct = await gateway.post(f"/models/{name}/infer", json={"text": "a cat"}, headers=headers)
    expected = direct.json()["vector"]
    # The package asks for base64 by default and decodes it: the same floats as /infer.
    one = await oai.embeddings.create(model=name, input="a cat")
    assert one.data[0].embedding == pytest.approx(expected, rel=1e-6)
    assert one.model == name and one.usage.prompt_tokens == 2
    floats = await oai.embeddings.create(
        model=name, input=["a cat", "a dog", "a cat"], encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1, 2]
    assert floats.data[0].embedding == pytest.approx(expected, rel=1e-6)
    assert floats.data[2].embedding == floats.data[0].embedding
    assert floats.data[1].embedding != floats.data[0].embedding


async def test_embedding_errors_come_in_openais_shape(gateway, user, deploy, client):
    headers = await user()
    name = (await deploy(HashingEmbedder())).consumer.spec.name
    echo = (await deploy(Echo())).consumer.spec.name
    oai = client(headers)
    with pytest.raises(openai.NotFoundError) as missing:
        await oai.embeddings.create(model="no-such-model", input="x")
    assert missing.value.body["code"] == "model_not_found"
    assert missing.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError):  # live, but serves no embeddings
        await oai.embeddings.create(model=echo, input="x")
    with pytest.raises(openai.BadRequestError) as dims:
        await oai.embeddings.create(model=name, input="x", dimensions=4)
    assert dims.value.body["param"] == "dimensions"
    assert dims.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError):
        await oai.embeddings.create(model=name, input=["fine", "  "])
    with pytest.raises(openai.UnprocessableEntityError) as failed:
        await oai.embeddings.create(model=name, input=["fine", "fail here"])
    assert "input[1]" in failed.value.body["message"]
    stranger = client({"Authorization": "Bearer not-a-token"})
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        await stranger.embeddings.create(model=name, input="x")
    assert unauthenticated.value.body["type"] == "authentication_error"


async def test_a_batch_runs_every_line_once_and_writes_its_output(
    gateway, user, deploy, client, services
):
    login = "batcher-" + str(time.monotonic_ns())
    headers = await user(login)
    model = await deploy(HashingEmbedder())
    name = model.consumer.spec.name
    # A small window of queued tasks: the batch is dispatched in turns as tasks end.
    await services.limits.update(login, LimitOverrides(active_tasks=7))
    lines = [embedding_line(f"line-{i}", name, f"text {i}") for i in range(40)]
    lines[13] = embedding_line("line-13", name, "fail this one")
    lines[20] = embedding_line("line-20", name, "text 20", encoding_format="base64")
    oai = client(headers)
    uploaded = await oai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes > 0
    batch = await oai.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/embeddings",
        completion_window="24h",
        metadata={"run": "test"},
    )
    assert batch.status == "in_progress" and batch.request_counts.total == 40
    await model.run()

    async def done():
        current = await oai.batches.retrieve(batch.id)
        return current if current.status == "completed" else None

    finished = await wait_for(done)
    assert finished.request_counts.completed == 39 and finished.request_counts.failed == 1
    assert finished.metadata == {"run": "test"}
    output = (await oai.files.content(finished.output_file_id)).content
    answers = [json.loads(line) for line in output.splitlines()]
    assert [a["custom_id"] for a in answers] == [f"line-{i}" for i in range(40)]
    expected = (
        await gateway.post(f"/models/{name}/infer", json={"text": "text 3"}, headers=headers)
    ).json()["vector"]
    three = answers[3]["response"]
    assert three["status_code"] == 200 and three["body"]["model"] == name
    assert three["body"]["data"][0]["embedding"] == pytest.approx(expected, rel=1e-6)
    assert isinstance(answers[20]["response"]["body"]["data"][0]["embedding"], str)
    assert answers[13]["response"] is None
    assert answers[13]["error"]["code"] == "invalid_input"
    # Each line ran once: one task per line, all of this user's.
    listed = [b.id async for b in oai.batches.list()]
    assert listed == [batch.id]


async def test_a_bad_input_file_fails_the_batch_with_an_error_per_line(user, deploy, client):
    headers = await user()
    name = (await deploy(HashingEmbedder())).consumer.spec.name
    oai = client(headers)
    lines = [
        embedding_line("a", name, "one"),
        embedding_line("a", name, "two"),
        {**embedding_line("b", name, "three"), "url": "/v1/chat/completions"},
        embedding_line("c", name, ["two", "texts"]),
    ]
    uploaded = await oai.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    batch = await oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert batch.status == "failed"
    assert [(e.line, e.code) for e in batch.errors.data] == [
        (2, "duplicate_custom_id"),
        (3, "mismatched_endpoint"),
        (4, "invalid_body"),
    ]


async def test_another_user_cannot_see_a_batch_or_its_files(user, deploy, client):
    owner, other = client(await user()), client(await user())
    name = (await deploy(HashingEmbedder())).consumer.spec.name
    uploaded = await owner.files.create(
        file=("in.jsonl", jsonl([embedding_line("a", name, "x")])), purpose="batch"
    )
    batch = await owner.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    for call in (
        other.files.retrieve(uploaded.id),
        other.files.content(uploaded.id),
        other.files.delete(uploaded.id),
        other.batches.retrieve(batch.id),
        other.batches.cancel(batch.id),
        other.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
        ),
    ):
        with pytest.raises(openai.NotFoundError):
            await call
    assert [b.id async for b in other.batches.list()] == []
    assert (await owner.files.delete(uploaded.id)).deleted
    with pytest.raises(openai.NotFoundError):
        await owner.files.retrieve(uploaded.id)


async def test_cancel_stops_dispatch_and_cancels_queued_lines(
    user, deploy, client, services, store
):
    login = "canceller-" + str(time.monotonic_ns())
    headers = await user(login)
    model = await deploy(HashingEmbedder())  # not consuming: tasks stay queued
    name = model.consumer.spec.name
    await services.limits.update(login, LimitOverrides(active_tasks=5))
    oai = client(headers)
    uploaded = await oai.files.create(
        file=("in.jsonl", jsonl([embedding_line(f"l{i}", name, f"t{i}") for i in range(30)])),
        purpose="batch",
    )
    batch = await oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    keys = services.openai_batches.keys

    async def dispatched():
        return int(await store.redis.hget(keys.batch(batch.id), "dispatched") or 0) == 5

    await wait_for(dispatched)
    cancelling = await oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    started = time.monotonic()

    async def cancelled():
        current = await oai.batches.retrieve(batch.id)
        return current if current.status == "cancelled" else None

    ended = await wait_for(cancelled, timeout=5)
    assert time.monotonic() - started < 2
    assert ended.request_counts.failed == 5 and ended.request_counts.completed == 0
    output = (await oai.files.content(ended.output_file_id)).content
    answers = [json.loads(line) for line in output.splitlines()]
    assert [a["error"]["code"] for a in answers] == ["cancelled"] * 5
    # Nothing more is dispatched, and the queued tasks were cancelled: a replica skips them.
    await model.drain()
    assert int(await store.redis.hget(keys.batch(batch.id), "dispatched")) == 5
    assert model.consumer.stats.succeeded == 0
    with pytest.raises(openai.BadRequestError):
        await oai.batches.cancel(batch.id)


async def test_a_worker_dying_between_submit_and_record_queues_no_line_twice(
    user, deploy, client, services, store
):
    """The chunk is submitted again with the same idempotency key: the same tasks come back,
    so every line still has exactly one task."""
    from app.core.redis_scripts import StoreError
    from app.openai import batches

    login = "crash-" + str(time.monotonic_ns())
    headers = await user(login)
    model = await deploy(HashingEmbedder())
    name = model.consumer.spec.name
    worker = services.openai_worker
    real_call = worker._scripts.call
    failed = []

    async def call(script, keys, args):
        if script is batches.RECORD_CHUNK and not failed:
            failed.append(args)
            raise StoreError("the worker died here")
        return await real_call(script, keys, args)

    worker._scripts.call = call
    oai = client(headers)
    uploaded = await oai.files.create(
        file=("in.jsonl", jsonl([embedding_line(f"l{i}", name, f"t{i}") for i in range(12)])),
        purpose="batch",
    )
    batch = await oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    await model.run()

    async def done():
        current = await oai.batches.retrieve(batch.id)
        return current if current.status == "completed" else None

    finished = await wait_for(done)
    assert failed, "the record step never failed: the test proves nothing"
    assert finished.request_counts.completed == 12
    assert await store.redis.zcard(store.user_index(login)) == 12
    assert model.consumer.stats.succeeded == 12


async def test_a_wrong_method_is_told_every_method_of_the_path(gateway):
    """GET and POST /v1/files are two routes: the 405 lists both, not only the first's."""
    answer = await gateway.request("PUT", "/v1/files")
    assert answer.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in answer.headers["allow"].split(",")}
    assert answer.json()["error"]["code"] == "method_not_allowed"
