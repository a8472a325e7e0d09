"""Streamed outputs on a real Ray Serve behind the front door (HAProxy): a streaming model's
chunks arrive over a task's event stream as they are produced, a client that drops and resumes
with `Last-Event-ID` loses and repeats none, `/infer` streams through a Serve streaming handle,
and the official `openai` package reads a chat model's chunks with `stream=True`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai

from deployments.python_docs import PythonDocs
from tests.utils.e2e import submit, wait_result
from tests.utils.models import Parrot, Streaming

WORDS = "alpha beta gamma delta epsilon zeta"
DELAY_MS = 300


def events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """Server-sent events as they arrive (comments skipped), each with its arrival time."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if fields:
                yield {**fields, "at": repr(time.monotonic())}
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")


def test_chunks_arrive_as_produced_and_a_resumed_stream_loses_and_repeats_none(
    http, auth, deploy_model
):
    headers = auth()
    name = deploy_model(Streaming)
    task_id = submit(http, headers, name, {"text": WORDS, "delay_ms": DELAY_MS})
    path = f"/models/{name}/tasks/{task_id}/events"
    seen: list[dict[str, str]] = []
    with http.stream("GET", path, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        for event in events(response):
            seen.append(event)
            if sum(e["event"] == "chunk" for e in seen) == 3:
                break  # the client goes away after three chunks
    chunks = [e for e in seen if e["event"] == "chunk"]
    # Live: three words took two pauses to make, and came that far apart.
    assert float(chunks[2]["at"]) - float(chunks[0]["at"]) >= 2 * DELAY_MS / 1000 * 0.8
    with http.stream(
        "GET", path, headers={**headers, "Last-Event-ID": seen[-1]["id"]}, timeout=30
    ) as response:
        rest = list(events(response))
    texts = [json.loads(e["data"])["text"] for e in [*chunks, *rest] if e["event"] == "chunk"]
    assert texts == [f"{w} " for w in WORDS.split()]
    assert rest[-1]["event"] == "succeeded"
    final = json.loads(rest[-1]["data"])
    assert final["chunks"] == 6 and final["result"]["text"] == f"{WORDS} "
    assert wait_result(http, headers, name, task_id)["result"]["text"] == f"{WORDS} "


def test_infer_streams_each_chunk_through_the_front_door(http, auth, deploy_model):
    headers = {**auth(), "Accept": "text/event-stream"}
    name = deploy_model(Streaming)
    with http.stream(
        "POST",
        f"/models/{name}/infer",
        json={"text": WORDS, "delay_ms": DELAY_MS},
        headers=headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        received = list(events(response))
    assert [e["event"] for e in received] == [*["chunk"] * 6, "done"]
    assert [json.loads(e["data"])["text"] for e in received[:-1]] == [
        f"{w} " for w in WORDS.split()
    ]
    # Not buffered anywhere on the way: the first word came long before the last.
    assert float(received[5]["at"]) - float(received[0]["at"]) >= 5 * DELAY_MS / 1000 * 0.8


def test_chat_completions_through_the_openai_package(gateway_url, auth, deploy_model):
    headers = auth()
    oai = openai.OpenAI(
        base_url=f"{gateway_url}/v1",
        api_key=headers["Authorization"].removeprefix("Bearer "),
        max_retries=0,
    )
    parrot = deploy_model(Parrot)
    said = "streams arrive one word at a time"
    stream = oai.chat.completions.create(
        model=parrot, messages=[{"role": "user", "content": said}], stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert "".join(pieces) == said
    assert len([p for p in pieces if p]) == len(said.split())  # one chunk per word, as yielded
    whole = oai.chat.completions.create(
        model=parrot, messages=[{"role": "user", "content": said}], max_tokens=3
    )
    assert whole.choices[0].message.content == "streams arrive one"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 3
    # The example chat model answers from the Python reference, streamed.
    docs = deploy_model(PythonDocs, init={"words_per_second": 400})
    answer = oai.chat.completions.create(
        model=docs,
        messages=[{"role": "user", "content": "How does the with statement work?"}],
        stream=True,
        max_tokens=20,
    )
    text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices)
    assert text.startswith('The "with" statement') and len(text.split()) == 20
