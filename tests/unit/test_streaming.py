"""Streamed outputs as plain logic: what `@model` takes, how chunks merge into a result, event
ids and resume points, chunk notifications, OpenAI's chunk format and the chat mappings."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest

from app.api.routes.results import StreamPosition
from app.inference.outcome import InferOutcome, Outcome
from app.openai.completions import CHAT, COMPLETIONS, ChunkEvents, chat_request, completion_request
from app.openai.errors import OpenAIInvalid
from app.openai.schemas import ChatCompletionRequest, CompletionRequest
from app.push.watch import Chunk
from deployments._runtime.streaming import merge_chunk
from deployments.python_docs import PythonDocs
from deployments.sdk import OpenAIMapping, model, spec_of
from protos.chat_pb2 import ChatChunk, ChatRequest, ChatTurn
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.iris_pb2 import IrisResponse


def test_an_async_generator_process_request_declares_a_streaming_model():
    @model(name="unit-streams", request=EchoRequest, response=EchoResponse)
    class Streams:
        async def process_request(self, request: EchoRequest) -> AsyncIterator[EchoResponse]:
            yield EchoResponse(text=request.text)

    assert spec_of(Streams).streams is True


def test_a_streaming_model_cannot_batch():
    with pytest.raises(TypeError, match="cannot be batched"):

        @model(
            name="unit-streams-batched",
            request=EchoRequest,
            response=EchoResponse,
            max_batch_size=4,
        )
        class Batched:
            async def process_request(self, request: EchoRequest) -> AsyncIterator[EchoResponse]:
                yield EchoResponse()

            async def process_batch(self, requests: list[EchoRequest]) -> list[EchoResponse]:
                return []


def test_a_plain_function_is_still_refused():
    with pytest.raises(TypeError, match="async def"):

        @model(name="unit-not-async", request=EchoRequest, response=EchoResponse)
        class NotAsync:
            def process_request(self, request: EchoRequest) -> EchoResponse:
                return EchoResponse()


def test_chunks_merge__strings_joined_repeated_added_other_scalars_replaced():
    merged = ChatChunk()
    for chunk in (
        ChatChunk(text="Hel", source="doc"),
        ChatChunk(text="lo"),
        ChatChunk(text="!", finish_reason="stop"),
    ):
        merge_chunk(merged, chunk)
    assert (merged.text, merged.source, merged.finish_reason) == ("Hello!", "doc", "stop")
    counts = IrisResponse(species="a", probabilities={"a": 0.2})
    merge_chunk(counts, IrisResponse(species="b", probabilities={"a": 0.9, "b": 0.1}))
    assert counts.species == "ab" and dict(counts.probabilities) == pytest.approx(
        {"a": 0.9, "b": 0.1}
    )


@pytest.mark.parametrize(
    ("header", "seq", "chunks"),
    [
        (None, 0, 0),
        ("", 0, 0),
        ("7", 7, 0),
        ("7.12", 7, 12),
        ("abc", 0, 0),
        ("-1", 0, 0),
        ("1.2.3", 0, 0),
    ],
)
def test_a_last_event_id_is_a_state_and_a_chunk_count(header, seq, chunks):
    position = StreamPosition.parse(header)
    assert (position.seq, position.chunks) == (seq, chunks)


def test_event_ids_name_the_state_and_the_chunks_sent():
    position = StreamPosition(seq=2)
    assert position.event_id == "2"  # a model that does not stream keeps plain numbers
    event = position.chunk('{"text":"a"}')
    assert event == 'id: 2.1\nevent: chunk\ndata: {"text":"a"}\n\n'
    assert StreamPosition.parse(position.event_id) == position


def test_a_chunk_notification_is_cut_apart_without_decoding_its_json():
    chunk = Chunk.parse(b'{"chunk":12,"data":{"text":"a,\\"data\\":b"}}')
    assert chunk == Chunk(12, '{"text":"a,\\"data\\":b"}')
    assert json.loads(chunk.json) == {"text": 'a,"data":b'}


def test_openai_mappings_for_chat_and_completions_check_the_messages():
    OpenAIMapping("chat").check(ChatRequest, ChatChunk)
    assert OpenAIMapping("chat").input == "messages" and OpenAIMapping("chat").output == "text"
    with pytest.raises(TypeError, match="repeated message field 'messages'"):
        OpenAIMapping("chat").check(EchoRequest, ChatChunk)
    with pytest.raises(TypeError, match="string field 'prompt'"):
        OpenAIMapping("completions").check(ChatRequest, ChatChunk)
    OpenAIMapping("completions", input="text").check(EchoRequest, EchoResponse)
    with pytest.raises(TypeError, match="string field 'vector'"):
        OpenAIMapping("chat", output="vector").check(ChatRequest, ChatChunk)
    with pytest.raises(TypeError, match="use one of"):
        OpenAIMapping("images")


def _live(request, response, endpoint, input_field, output_field="text"):
    view = SimpleNamespace(name="m", openai_input=input_field, openai_output=output_field)
    return SimpleNamespace(view=view, types=SimpleNamespace(request=request, response=response))


def test_a_conversation_becomes_the_request_message_with_its_parameters():
    live = _live(ChatRequest, ChatChunk, CHAT, "messages")
    body = ChatCompletionRequest(
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "why so"}]},
        ],
        max_completion_tokens=9,
        temperature=0.5,  # the message has no such field: not passed on
    )
    payload, tokens = chat_request(live, body)
    request = ChatRequest.FromString(payload)
    assert [(t.role, t.content) for t in request.messages] == [
        ("system", "Be brief."),
        ("user", "why so"),
    ]
    assert request.max_tokens == 9 and tokens == 4
    with pytest.raises(OpenAIInvalid, match="only text parts"):
        chat_request(
            live,
            ChatCompletionRequest(
                model="m", messages=[{"role": "user", "content": [{"type": "image_url"}]}]
            ),
        )


def test_one_prompt_becomes_the_request_message():
    live = _live(EchoRequest, EchoResponse, COMPLETIONS, "text")
    payload, tokens = completion_request(live, CompletionRequest(model="m", prompt=["say it"]))
    assert EchoRequest.FromString(payload).text == "say it" and tokens == 2
    with pytest.raises(OpenAIInvalid, match="exactly one prompt"):
        completion_request(live, CompletionRequest(model="m", prompt=["a", "b"]))


def test_openai_chat_chunks__role_first_deltas_then_finish_usage_and_done():
    events = ChunkEvents(
        _live(ChatRequest, ChatChunk, CHAT, "messages"), CHAT, 3, include_usage=True
    )
    first = events.chunk(ChatChunk(text="Hi").SerializeToString())
    second = events.chunk(ChatChunk(text=" there", finish_reason="length").SerializeToString())
    end = events.done()
    bodies = [
        json.loads(line.removeprefix("data: "))
        for line in (first + second + end).split("\n\n")
        if line and line != "data: [DONE]"
    ]
    assert end.endswith("data: [DONE]\n\n")
    assert bodies[0]["choices"][0]["delta"] == {"content": "Hi", "role": "assistant"}
    assert bodies[1]["choices"][0]["delta"] == {"content": " there"}
    assert bodies[2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "finish_reason": "length",
        "logprobs": None,
    }
    assert bodies[3]["choices"] == [] and bodies[3]["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
    }
    assert {b["object"] for b in bodies} == {"chat.completion.chunk"} and len(
        {b["id"] for b in bodies}
    ) == 1
    failed = events.error(InferOutcome(Outcome.MODEL_ERROR, error="boom"))
    assert json.loads(failed.removeprefix("data: "))["error"]["type"] == "server_error"


def test_python_docs_streams_the_matching_reference_section_word_by_word():
    docs = PythonDocs(words_per_second=10_000)

    async def answer(question: str, max_tokens: int = 0) -> list[ChatChunk]:
        request = ChatRequest(
            messages=[ChatTurn(role="user", content=question)], max_tokens=max_tokens
        )
        return [chunk async for chunk in docs.process_request(request)]

    chunks = asyncio.run(answer("How does the with statement work?", max_tokens=12))
    assert len(chunks) == 12 and chunks[0].source == "with"
    assert "".join(c.text for c in chunks).startswith('The "with" statement')
    assert [c.finish_reason for c in chunks] == [""] * 11 + ["length"]
    short = asyncio.run(answer("pass", max_tokens=2000))
    assert short[-1].finish_reason == "stop" and short[0].source == "pass"
    # A section is found by the words a question uses for it, plural or not.
    for question, section in (
        ("How do list comprehensions work?", "lists"),
        ("how do classes work", "class"),
        ("What are the string methods?", "string-methods"),
        ("How do dictionaries work?", "typesmapping"),
        ("How does slicing work?", "slicings"),
        ("What are f-strings?", "formatstrings"),
    ):
        assert docs.best_section(question)[0] == section, question
    from deployments.sdk import InvalidInput

    with pytest.raises(InvalidInput, match="user message"):
        asyncio.run(answer(" "))
