"""Streamed outputs: a model whose `process_request` is an async generator of response messages.

Each yielded message is a chunk. A queued task's chunks are written to Redis in order as they
come (`ResultStore.add_chunk`: the task's chunk list, kept as long as its record, and a
notification the gateway's subscriber fans out to the task's event streams). The task's result
is the chunks merged in order (`merge_chunk`): string and bytes fields are joined (a text
streamed piece by piece becomes the whole text), repeated fields add up, any other field set in
a later chunk replaces the earlier value, as protobuf's `MergeFrom` does.

A retried attempt runs the generator again from its start. Its first chunks take the places of
those an earlier attempt already wrote, which are not written or sent again; what it yields
beyond them is appended. The result is then merged from the stored chunks, so it always equals
what the task's clients received, whatever the attempts yielded.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from app.tasks.store import ResultStore
from deployments._contract import ModelSpec
from protos.codec import message_to_json


class BadChunk(Exception):  # noqa: N818 - an outcome
    """The generator yielded something other than the model's response message."""


async def stream_chunks(
    spec: ModelSpec, model: Any, request: Message
) -> AsyncGenerator[Message, None]:
    """The checked chunks of one `process_request` call; the generator is closed however the
    caller stops (a cancel lands in the model's own code at its next `await`)."""
    generator = model.process_request(request)
    try:
        async for chunk in generator:
            if not isinstance(chunk, spec.response):
                raise BadChunk(
                    f"process_request yielded {type(chunk).__name__}, "
                    f"expected {spec.response.__name__}"
                )
            yield chunk
    finally:
        await generator.aclose()


_JOINED = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)


def merge_chunk(into: Message, chunk: Message) -> None:
    """Merge `chunk` into `into`: strings and bytes joined, the rest as `MergeFrom` does."""
    joined = {
        field.name: getattr(into, field.name) + value
        for field, value in chunk.ListFields()
        if field.type in _JOINED and not field.is_repeated
    }
    into.MergeFrom(chunk)
    for name, value in joined.items():
        setattr(into, name, value)


async def merged_answer(spec: ModelSpec, model: Any, request: Message) -> Message:
    """A streaming model's whole answer (a synchronous call that does not stream)."""
    answer = spec.response()
    async for chunk in stream_chunks(spec, model, request):
        merge_chunk(answer, chunk)
    return answer


class TaskChunks:
    """Writes one task's chunks in order and keeps their merge.

    Args:
        store: where the chunks go.
        task_id: the task.
        response: the model's response message class.
    """

    def __init__(self, store: ResultStore, task_id: str, response: type[Message]) -> None:
        self._store = store
        self._task_id = task_id
        self._response = response
        self._merged = response()
        self._replaced = False
        self.count = 0

    async def add(self, chunk: Message) -> bool:
        """Write the next chunk; False when the task no longer runs (stop generating)."""
        self.count += 1
        merge_chunk(self._merged, chunk)
        written = await self._store.add_chunk(self._task_id, self.count, message_to_json(chunk))
        if written == 0:
            self._replaced = True  # an earlier attempt wrote this one
        return written >= 0

    async def result(self) -> Message:
        """The task's result: the merge of the chunks its clients received."""
        if not self._replaced:
            return self._merged
        answer = self._response()
        for text in await self._store.chunks(self._task_id):
            merge_chunk(answer, json_format.Parse(text, self._response()))
        return answer
