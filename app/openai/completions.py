"""`/v1/chat/completions` and `/v1/completions` on models that declare `openai="chat"` or
`openai="completions"` (`deployments.sdk.OpenAIMapping` says how the messages map).

The conversation (or prompt) becomes the model's request message; the answer is the text of
the response's mapped string field, concatenated over the chunks of a streaming model (each
chunk is OpenAI's next `delta`). Both go through the model's replicas as a streamed
synchronous call (`ModelCaller.stream`), so `stream: true` sends each chunk as it is produced.
A chunk's string field `finish_reason`, when the response has one and it is set, becomes the
choice's finish reason (e.g. `length`); otherwise it is `stop`.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from google.protobuf.message import Message

from app.catalog.catalog import LiveModel
from app.inference.caller import ModelCaller
from app.inference.outcome import InferOutcome, Outcome, outcome_error
from app.openai.errors import OpenAIInvalid, openai_error_body
from app.openai.schemas import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    CompletionUsage,
    TextChoice,
    TextCompletion,
)
from app.openai.served import count_tokens
from app.streaming.calls import CallEvents

CHAT = "chat"
COMPLETIONS = "completions"
# Body parameters that reach the request message when it has a scalar field of that name.
PARAMETERS = ("max_tokens", "temperature", "top_p", "seed")
FINISH_FIELD = "finish_reason"


def _text(message: ChatMessage, index: int) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise OpenAIInvalid(
                f"messages[{index}].content: only text parts are taken, not {part.type!r}",
                param="messages",
            )
        texts.append(part.text)
    return "".join(texts)


def _set_parameters(request: Message, values: dict[str, Any]) -> None:
    fields = request.DESCRIPTOR.fields_by_name
    for name in PARAMETERS:
        value = values.get(name)
        field = fields.get(name)
        if value is None or field is None or field.message_type is not None:
            continue
        try:
            setattr(request, name, value)
        except (TypeError, ValueError) as exc:
            raise OpenAIInvalid(f"{name}: {exc}", param=name) from None


def chat_request(model: LiveModel, body: ChatCompletionRequest) -> tuple[bytes, int]:
    """The model's request message for a conversation, and the conversation's tokens."""
    request = model.types.request()
    turns = getattr(request, model.view.openai_input)
    texts = []
    for index, message in enumerate(body.messages):
        turn = turns.add()
        turn.role = message.role
        turn.content = _text(message, index)
        texts.append(turn.content)
    _set_parameters(
        request, {**body.model_dump(), "max_tokens": body.max_completion_tokens or body.max_tokens}
    )
    return request.SerializeToString(deterministic=True), count_tokens(texts)


def completion_request(model: LiveModel, body: CompletionRequest) -> tuple[bytes, int]:
    """The model's request message for a prompt, and the prompt's tokens."""
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise OpenAIInvalid("prompt: give exactly one prompt per request", param="prompt")
    request = model.types.request()
    setattr(request, model.view.openai_input, prompts[0])
    _set_parameters(request, body.model_dump())
    return request.SerializeToString(deterministic=True), count_tokens(prompts)


class Pieces:
    """Reads the model's chunks: each one's text, the answer so far, its finish reason."""

    def __init__(self, model: LiveModel) -> None:
        self._response = model.types.response
        self._output = model.view.openai_output
        self._has_finish = FINISH_FIELD in self._response.DESCRIPTOR.fields_by_name
        self.text: list[str] = []
        self.finish_reason = "stop"

    def add(self, response: bytes) -> str:
        message = self._response.FromString(response)
        piece: str = getattr(message, self._output)
        self.text.append(piece)
        if self._has_finish and getattr(message, FINISH_FIELD):
            self.finish_reason = getattr(message, FINISH_FIELD)
        return piece

    @property
    def answer(self) -> str:
        return "".join(self.text)


def _usage(prompt_tokens: int, answer: str) -> CompletionUsage:
    completion = count_tokens([answer])
    return CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
    )


async def complete(caller: ModelCaller, model: LiveModel, payload: bytes) -> Pieces:
    """The model's whole answer (a request without `stream`).

    Raises:
        what `/infer` raises for a failed call (`outcome_error`).
    """
    pieces = Pieces(model)
    async for outcome in caller.stream(model.view, payload):
        if outcome.outcome is not Outcome.OK:
            raise outcome_error(outcome)
        pieces.add(outcome.response)
    return pieces


def chat_completion(model: LiveModel, pieces: Pieces, prompt_tokens: int) -> ChatCompletion:
    return ChatCompletion(
        id=f"chatcmpl-{secrets.token_hex(12)}",
        created=int(time.time()),
        model=model.view.name,
        choices=[
            ChatChoice(
                message=AssistantMessage(content=pieces.answer), finish_reason=pieces.finish_reason
            )
        ],
        usage=_usage(prompt_tokens, pieces.answer),
    )


def text_completion(model: LiveModel, pieces: Pieces, prompt_tokens: int) -> TextCompletion:
    return TextCompletion(
        id=f"cmpl-{secrets.token_hex(12)}",
        created=int(time.time()),
        model=model.view.name,
        choices=[TextChoice(text=pieces.answer, finish_reason=pieces.finish_reason)],
        usage=_usage(prompt_tokens, pieces.answer),
    )


def _data(body: dict[str, Any]) -> str:
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n"


class ChunkEvents(CallEvents):
    """OpenAI's streamed chunks (`data:` lines only, ending with `data: [DONE]`), for chat
    (`chat.completion.chunk`, deltas) or text completions (`text_completion`, texts)."""

    def __init__(
        self, model: LiveModel, endpoint: str, prompt_tokens: int, *, include_usage: bool
    ) -> None:
        self._pieces = Pieces(model)
        self._chat = endpoint == CHAT
        self._prompt_tokens = prompt_tokens
        self._include_usage = include_usage
        self._base = {
            "id": f"{'chatcmpl' if self._chat else 'cmpl'}-{secrets.token_hex(12)}",
            "object": "chat.completion.chunk" if self._chat else "text_completion",
            "created": int(time.time()),
            "model": model.view.name,
        }
        self._started = False

    def _choice(self, piece: str, finish_reason: str | None) -> dict[str, Any]:
        if not self._chat:
            return {"index": 0, "text": piece, "finish_reason": finish_reason, "logprobs": None}
        delta: dict[str, Any] = {} if finish_reason else {"content": piece}
        if not self._started:
            delta["role"] = "assistant"  # the first delta names the role, as OpenAI's does
            self._started = True
        return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}

    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> str:
        return _data({**self._base, "choices": choices, **extra})

    def chunk(self, response: bytes) -> str:
        return self._chunk([self._choice(self._pieces.add(response), None)])

    def done(self) -> str:
        events = [self._chunk([self._choice("", self._pieces.finish_reason)])]
        if self._include_usage:
            usage = _usage(self._prompt_tokens, self._pieces.answer)
            events.append(self._chunk([], usage=usage.model_dump()))
        events.append("data: [DONE]\n\n")
        return "".join(events)

    def error(self, outcome: InferOutcome) -> str:
        error = outcome_error(outcome)
        return _data(openai_error_body(error.status_code, error.code, error.detail))
