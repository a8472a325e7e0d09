"""Models used only by tests: they count their calls, report progress, or wait to be told."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from deployments.sdk import InvalidInput, model, report_progress
from protos.chat_pb2 import ChatChunk, ChatRequest
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.embedder_pb2 import EmbedRequest, EmbedResponse


@model(name="counting", request=EchoRequest, response=EchoResponse, max_attempts=1)
class Counting:
    """Echo that counts its calls in this process, and says the count in `replica`."""

    calls = 0

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        type(self).calls += 1
        calls = type(self).calls
        if request.delay_ms:
            await asyncio.sleep(request.delay_ms / 1000)
        if request.fail_with:
            raise InvalidInput(request.fail_with)
        return EchoResponse(text=request.text, replica=f"calls={calls}")


@model(name="progressing", request=EchoRequest, response=EchoResponse)
class Progressing:
    """Reports half-way progress, waits `delay_ms`, then answers."""

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        await report_progress(0.5, "halfway")
        await asyncio.sleep(request.delay_ms / 1000)
        await report_progress(1.0, "done")
        return EchoResponse(text=request.text)


@model(
    name="batching",
    request=EchoRequest,
    response=EchoResponse,
    max_batch_size=16,
    batch_wait_timeout_s=0.2,
    max_attempts=3,
    retry_backoff_s=0.1,
)
class Batching:
    """Echo in batches: each answer's `replica` says the size of the batch it came from.

    By `fail_with`: "invalid" fails that item alone (`InvalidInput`); "raise" makes the whole
    call raise, every time; "raise-once" makes it raise the first time it sees the text."""

    seen: set[str] = set()

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        [answer] = await self.process_batch([request])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def process_batch(self, requests: list[EchoRequest]) -> list[EchoResponse | Exception]:
        fresh = [
            r.text for r in requests if r.fail_with == "raise-once" and r.text not in self.seen
        ]
        self.seen.update(fresh)
        if fresh or any(r.fail_with == "raise" for r in requests):
            raise RuntimeError(f"batch of {len(requests)} raised")
        return [
            InvalidInput(f"{r.text} is invalid")
            if r.fail_with == "invalid"
            else EchoResponse(text=r.text, replica=f"batch={len(requests)}")
            for r in requests
        ]


@model(name="fixable", request=EchoRequest, response=EchoResponse, max_attempts=1)
class Fixable:
    """Fails every task with a bug while `broken`; answers once the bug is fixed."""

    def __init__(self) -> None:
        self.broken = True

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        if self.broken:
            raise RuntimeError("bug in the model")
        return EchoResponse(text=request.text)


@model(name="recording", request=EchoRequest, response=EchoResponse, max_attempts=1)
class Recording:
    """Echo that remembers the order in which it ran its tasks (by their text)."""

    def __init__(self) -> None:
        self.order: list[str] = []

    async def process_request(self, request: EchoRequest) -> EchoResponse:
        self.order.append(request.text)
        return EchoResponse(text=request.text)


@model(
    name="hashing-embedder",
    request=EmbedRequest,
    response=EmbedResponse,
    openai="embeddings",
    max_attempts=1,
)
class HashingEmbedder:
    """A stand-in for a neural embedder: a unit vector of 8 numbers made from the text's hash
    (the same text, the same vector); a text starting with "fail" fails, one starting with
    "slow" takes a quarter of a second."""

    async def process_request(self, request: EmbedRequest) -> EmbedResponse:
        if request.text.startswith("fail"):
            raise InvalidInput("told to fail")
        if request.text.startswith("slow"):
            await asyncio.sleep(0.25)
        digest = hashlib.sha256(request.text.encode()).digest()
        vector = [b - 127.5 for b in digest[:8]]
        norm = sum(v * v for v in vector) ** 0.5
        return EmbedResponse(vector=[v / norm for v in vector], dimension=8)


@model(name="streaming", request=EchoRequest, response=EchoResponse, retry_backoff_s=0.05)
class Streaming:
    """Streams the words of `text` one chunk each, `delay_ms` apart; with `fail_with`, its first
    call in this process raises after half the words (the retried attempt streams them all).
    `started` and `closed` count the generators begun and finished (a cancel closes one)."""

    calls = 0
    closed = 0

    async def process_request(self, request: EchoRequest) -> AsyncIterator[EchoResponse]:
        type(self).calls += 1
        first_call = type(self).calls == 1
        words = request.text.split()
        try:
            for index, word in enumerate(words):
                if request.fail_with and first_call and index == len(words) // 2:
                    raise RuntimeError(request.fail_with)
                yield EchoResponse(text=f"{word} ", replica=str(index))
                if request.delay_ms and index < len(words) - 1:
                    await asyncio.sleep(request.delay_ms / 1000)
        finally:
            type(self).closed += 1


@model(name="parrot", request=ChatRequest, response=ChatChunk, openai="chat")
class Parrot:
    """A chat model for tests: answers with the last user message, streamed word by word,
    stopping at `max_tokens` words (finish reason `length`)."""

    async def process_request(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        said = [turn.content for turn in request.messages if turn.role == "user"]
        if not said:
            raise InvalidInput("say something")
        words = said[-1].split()
        limit = request.max_tokens or len(words)
        for index, word in enumerate(words[:limit]):
            last = index == min(limit, len(words)) - 1
            finish = ("length" if limit < len(words) else "stop") if last else ""
            yield ChatChunk(text=word if index == 0 else f" {word}", finish_reason=finish)
            await asyncio.sleep(0.01)
