"""Streamed outputs: a model whose `process_request` yields chunks, on real Redis and RabbitMQ
with the gateway in process. Chunks reach a task's event stream in order and are kept; a stream
resumed with `Last-Event-ID` gets what it missed once; a retried attempt sends nothing twice;
a cancel stops the generator; `/infer` and the OpenAI routes stream the same chunks."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from deployments.echo import Echo
from tests.utils.e2e import parse_events
from tests.utils.models import Parrot, Streaming

WORDS = "one two three four five six seven eight"


@pytest.fixture(autouse=True)
def _fresh_counts():
    Streaming.calls = 0
    Streaming.closed = 0


async def submit(gateway, headers, name, body):
    response = await gateway.post(f"/models/{name}/tasks", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["task_id"]


async def until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def chunk_texts(events):
    return [json.loads(e["data"])["text"] for e in events if e["event"] == "chunk"]


async def test_chunks_reach_the_event_stream_in_order_and_the_result_is_their_merge(
    gateway, user, deploy, services
):
    headers = await user()
    model = await deploy(Streaming())
    name = model.consumer.spec.name
    assert (await gateway.get(f"/models/{name}", headers=headers)).json()["streams"] is True
    task_id = await submit(gateway, headers, name, {"text": WORDS, "delay_ms": 10})
    stream = asyncio.create_task(
        gateway.get(f"/models/{name}/tasks/{task_id}/events", headers=headers)
    )

    async def watched():
        return services.notifications.watched == 1

    await until(watched)
    await model.drain()
    events = parse_events((await stream).text)
    kinds = [e["event"] for e in events]
    assert kinds == ["pending", "running", *["chunk"] * 8, "succeeded"], kinds
    assert chunk_texts(events) == [f"{w} " for w in WORDS.split()]
    # Each id names the state and the chunks sent so far: a resume point.
    assert [e["id"] for e in events] == ["1", "2", *(f"2.{n}" for n in range(1, 9)), "3.8"]
    final = json.loads(events[-1]["data"])
    assert final["chunks"] == 8
    # Strings joined, in order: the whole answer.
    assert final["result"] == {"text": f"{WORDS} ", "replica": "01234567"}
    stored = await services.store.chunks(task_id)
    assert [json.loads(c)["text"] for c in stored] == chunk_texts(events)
    assert await services.store.redis.ttl(services.store.chunks_key(task_id)) > 0


async def test_chunks_are_handed_to_every_stream_as_they_come_by_the_one_subscriber(
    gateway, user, deploy, services
):
    """Live, not read back at the end: each chunk reaches the waiting streams while the model
    still runs, through the replica's one subscription, with no read per stream."""
    from app.push.watch import Chunk

    headers = await user()
    model = await deploy(Streaming())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "a b c", "delay_ms": 300})
    reads_before = await _lrange_calls(services)
    async with (
        services.notifications.watch(task_id, chunks=True) as first,
        services.notifications.watch(task_id, chunks=True) as second,
        services.notifications.watch(task_id) as states_only,
    ):
        await model.run()
        received: list[Chunk] = []
        while len(received) < 3:
            change = await first.next_change(5)
            assert change is not None
            if isinstance(change, Chunk):
                received.append(change)
                if len(received) < 3:  # the model is still at work on the next one
                    assert (await services.store.get(task_id)).status.value == "running"
        assert [json.loads(c.json)["text"] for c in received] == ["a ", "b ", "c "]
        assert [c.number for c in received] == [1, 2, 3]
        others = [await second.next_change(1) for _ in range(8)]
        assert [c.number for c in others if isinstance(c, Chunk)] == [1, 2, 3]
        plain = [await states_only.next_change(0.5) for _ in range(4)]
        assert not any(isinstance(c, Chunk) for c in plain)
    assert services.notifications.watched == 0
    assert await _lrange_calls(services) == reads_before


async def _lrange_calls(services) -> int:
    stats = await services.store.redis.info("commandstats")
    return int(stats.get("cmdstat_lrange", {}).get("calls", 0))


async def test_a_finished_task_replays_its_chunks_and_resumes_after_any_of_them(
    gateway, user, deploy
):
    headers = await user()
    model = await deploy(Streaming())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": WORDS})
    await model.drain()
    path = f"/models/{name}/tasks/{task_id}/events"
    replay = parse_events((await gateway.get(path, headers=headers)).text)
    assert [e["event"] for e in replay] == [*["chunk"] * 8, "succeeded"]
    assert chunk_texts(replay) == [f"{w} " for w in WORDS.split()]
    for cut in (0, 3, 7):
        resumed = parse_events(
            (await gateway.get(path, headers={**headers, "Last-Event-ID": replay[cut]["id"]})).text
        )
        assert resumed == replay[cut + 1 :], cut
    # A client's plain number (an older id) still resumes the states; the chunks come again.
    assert [
        e["event"]
        for e in parse_events(
            (await gateway.get(path, headers={**headers, "Last-Event-ID": "2"})).text
        )
    ] == [*["chunk"] * 8, "succeeded"]


async def test_a_stream_resumed_while_the_model_runs_loses_and_repeats_nothing(
    gateway, user, deploy, services
):
    headers = await user()
    model = await deploy(Streaming())
    name = model.consumer.spec.name
    await model.run()
    task_id = await submit(gateway, headers, name, {"text": WORDS, "delay_ms": 150})

    async def three_chunks():
        record = await services.store.get(task_id)
        return record is not None and record.chunks >= 3

    await until(three_chunks)
    # The client saw `running` and two chunks, then lost its connection.
    resumed = parse_events(
        (
            await gateway.get(
                f"/models/{name}/tasks/{task_id}/events",
                headers={**headers, "Last-Event-ID": "2.2"},
            )
        ).text
    )
    assert [e["event"] for e in resumed] == [*["chunk"] * 6, "succeeded"]
    assert chunk_texts(resumed) == [f"{w} " for w in WORDS.split()[2:]]
    assert [e["id"] for e in resumed] == [*(f"2.{n}" for n in range(3, 9)), "3.8"]


async def test_a_retried_attempt_sends_no_chunk_twice_and_its_result_is_what_was_sent(
    gateway, user, deploy, services
):
    headers = await user()
    model = await deploy(Streaming())
    name = model.consumer.spec.name
    task_id = await submit(gateway, headers, name, {"text": "a b c d", "fail_with": "boom"})
    stream = asyncio.create_task(
        gateway.get(f"/models/{name}/tasks/{task_id}/events", headers=headers)
    )

    async def watched():
        return services.notifications.watched == 1

    await until(watched)  # the stream sees the task from its first state on

    async def finished():
        await model.drain()
        record = await services.store.get(task_id)
        return record is not None and record.status.is_final

    await until(finished)
    events = parse_events((await stream).text)
    # The first attempt sent a and b, then failed; the retry's a and b were not sent again.
    assert chunk_texts(events) == ["a ", "b ", "c ", "d "]
    states = [e["event"] for e in events if e["event"] != "chunk"]
    assert states == ["pending", "running", "pending", "running", "succeeded"], states
    final = json.loads(events[-1]["data"])
    assert final["attempts"] == 2 and final["chunks"] == 4
    assert final["result"]["text"] == "a b c d "
    assert Streaming.calls == 2
    # What is kept is what was sent: a replay shows each chunk once too.
    replay = parse_events(
        (await gateway.get(f"/models/{name}/tasks/{task_id}/events", headers=headers)).text
    )
    assert chunk_texts(replay) == ["a ", "b ", "c ", "d "]


async def test_cancel_stops_a_streaming_model_within_a_second(
    gateway, user, deploy, services, settings
):
    headers = await user()
    model = await deploy(Streaming())
    name = model.consumer.spec.name
    await model.run()
    async with model.hearing_cancels(str(settings.redis_url)):
        task_id = await submit(gateway, headers, name, {"text": WORDS * 10, "delay_ms": 200})

        async def streaming():
            record = await services.store.get(task_id)
            return record is not None and record.chunks >= 1

        await until(streaming)
        started = time.monotonic()
        response = await gateway.delete(f"/models/{name}/tasks/{task_id}", headers=headers)
        assert response.status_code == 202

        async def stopped():
            record = await services.store.get(task_id)
            return Streaming.closed == 1 and record is not None and record.status.is_final

        await until(stopped)
        assert time.monotonic() - started < 1.0
        record = await services.store.get(task_id)
        assert record.status.value == "cancelled"
        assert record.chunks < 80  # stopped part way, not run to its end


async def test_infer_with_accept_event_stream_sends_each_chunk_then_done(gateway, user, deploy):
    headers = {**await user(), "Accept": "text/event-stream"}
    streaming = (await deploy(Streaming())).consumer.spec.name
    answer = await gateway.post(f"/models/{streaming}/infer", json={"text": WORDS}, headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = parse_events(answer.text)
    assert [e["event"] for e in events] == [*["chunk"] * 8, "done"]
    assert chunk_texts(events) == [f"{w} " for w in WORDS.split()]
    # Without the header: the chunks merged, as the task's result would be.
    whole = await gateway.post(
        f"/models/{streaming}/infer",
        json={"text": WORDS},
        headers={"Authorization": headers["Authorization"]},
    )
    assert whole.json()["text"] == f"{WORDS} "
    # A model that does not stream answers in one chunk.
    echo = (await deploy(Echo())).consumer.spec.name
    single = await gateway.post(f"/models/{echo}/infer", json={"text": "hi"}, headers=headers)
    assert [e["event"] for e in parse_events(single.text)] == ["chunk", "done"]
    # Refused before its first chunk: the call's own status, not a stream.
    parrot = (await deploy(Parrot())).consumer.spec.name
    refused = await gateway.post(f"/models/{parrot}/infer", json={"messages": []}, headers=headers)
    assert refused.status_code == 422 and refused.json()["error"] == "invalid_input"


async def test_a_model_failing_mid_stream_ends_the_infer_stream_with_an_error_event(
    gateway, user, deploy
):
    headers = {**await user(), "Accept": "text/event-stream"}
    name = (await deploy(Streaming())).consumer.spec.name
    answer = await gateway.post(
        f"/models/{name}/infer", json={"text": "a b c d", "fail_with": "broke"}, headers=headers
    )
    events = parse_events(answer.text)
    assert [e["event"] for e in events] == ["chunk", "chunk", "error"]
    assert json.loads(events[-1]["data"]) == {
        "error": "model_error",
        "detail": "RuntimeError: broke",
    }


async def test_chat_completions_whole_and_streamed(gateway, user, deploy):
    headers = await user()
    name = (await deploy(Parrot())).consumer.spec.name
    conversation = [
        {"role": "system", "content": "You repeat."},
        {"role": "user", "content": [{"type": "text", "text": "hello there world"}]},
    ]
    whole = await gateway.post(
        "/v1/chat/completions", json={"model": name, "messages": conversation}, headers=headers
    )
    assert whole.status_code == 200, whole.text
    body = whole.json()
    assert body["object"] == "chat.completion" and body["model"] == name
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello there world"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}

    streamed = await gateway.post(
        "/v1/chat/completions",
        json={
            "model": name,
            "messages": conversation,
            "stream": True,
            "max_tokens": 2,
            "stream_options": {"include_usage": True},
        },
        headers=headers,
    )
    lines = [e["data"] for e in parse_events(streamed.text)]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(d.get("content", "") for d in deltas) == "hello there"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2


async def test_text_completions_and_the_wrong_endpoint(gateway, user, deploy):
    headers = await user()
    name = (await deploy(Parrot())).consumer.spec.name
    wrong = await gateway.post(
        "/v1/completions", json={"model": name, "prompt": "hi"}, headers=headers
    )
    assert wrong.status_code == 404
    assert wrong.json()["error"]["param"] == "model"
    many = await gateway.post(
        "/v1/chat/completions",
        json={"model": name, "messages": [{"role": "user", "content": "x"}], "n": 2},
        headers=headers,
    )
    assert many.status_code == 422 and many.json()["error"]["type"] == "invalid_request_error"
