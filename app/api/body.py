"""Decoding a task body by its content type (its size is capped where its route is included)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from google.protobuf.message import Message

from app.core.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from protos.codec import (
    PROTOBUF_CONTENT_TYPE,
    DecodeFailed,
    JsonMismatch,
    load_json,
    message_from_bytes,
    message_from_dict,
    message_from_json,
)
from protos.task_pb2 import Batch
from protos.validation import MessageValidator

if TYPE_CHECKING:
    from app.catalog.catalog import LiveModel
    from app.services import Services

PROTOBUF_TYPES = {PROTOBUF_CONTENT_TYPE, "application/protobuf", "application/octet-stream"}
JSON_TYPES = {"application/json", ""}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def decode_request(
    body: bytes,
    content_type: str,
    message_cls: type[Message],
    validator: MessageValidator | None = None,
) -> Message:
    """Turn a task body into the model's request message.

    Raises:
        BadRequest: invalid protobuf bytes, or a body that is not JSON.
        InvalidInput: JSON that does not match the message (names the field).
        UnsupportedMediaType: neither JSON nor protobuf.
    """
    if content_type in PROTOBUF_TYPES:
        try:
            return message_from_bytes(body, message_cls)
        except DecodeFailed as exc:
            raise BadRequest(str(exc)) from exc
    if content_type in JSON_TYPES or content_type.endswith("+json"):
        try:
            return message_from_json(body, message_cls, validator)
        except DecodeFailed as exc:
            raise BadRequest(str(exc)) from exc
        except JsonMismatch as exc:
            raise InvalidInput(str(exc)) from exc
    raise UnsupportedMediaType(
        f"send application/json or {PROTOBUF_CONTENT_TYPE}, not {content_type!r}"
    )


def decode_batch(
    body: bytes,
    content_type: str,
    message_cls: type[Message],
    validator: MessageValidator | None = None,
    *,
    max_items: int,
) -> list[Message]:
    """Turn a batch body into request messages: a JSON array of them, or a `platform.Batch`.

    Raises:
        BadRequest: not JSON, or not a valid `platform.Batch`.
        InvalidInput: not an array, empty, or an item that does not match (names its index).
        PayloadTooLarge: more than `max_items` items.
        UnsupportedMediaType: neither JSON nor protobuf.
    """
    if content_type in PROTOBUF_TYPES:
        try:
            items: list[Any] = list(message_from_bytes(body, Batch).requests)  # type: ignore[attr-defined]
        except DecodeFailed as exc:
            raise BadRequest(str(exc)) from exc

        def parse(item: Any, cls: type[Message]) -> Message:
            return message_from_bytes(item, cls)

    elif content_type in JSON_TYPES or content_type.endswith("+json"):
        try:
            items = load_json(body)
        except DecodeFailed as exc:
            raise BadRequest(str(exc)) from exc
        if not isinstance(items, list):
            raise InvalidInput("a batch is a JSON array of request messages")

        def parse(item: Any, cls: type[Message]) -> Message:
            return message_from_dict(item, cls, validator)
    else:
        raise UnsupportedMediaType(
            f"send application/json or {PROTOBUF_CONTENT_TYPE}, not {content_type!r}"
        )
    if not items:
        raise InvalidInput("a batch needs at least one request message")
    if len(items) > max_items:
        raise PayloadTooLarge(f"a batch holds at most {max_items} request messages")
    messages = []
    for index, item in enumerate(items):
        try:
            messages.append(parse(item, message_cls))
        except (DecodeFailed, JsonMismatch) as exc:
            raise InvalidInput(f"item {index}: {exc}") from exc
    return messages


async def enabled_model_request(
    services: Services, name: str, request: Request
) -> tuple[LiveModel, Message]:
    """The live, enabled model `name` and the request message its body holds (one message,
    JSON or protobuf, within the body size limit): what a submit and a call start with.

    Raises:
        ModelNotFound, ModelDisabled, PayloadTooLarge, BadRequest, InvalidInput,
        UnsupportedMediaType: each with its own status.
    """
    model = await services.catalog.get(name)
    await services.ensure_enabled(name)
    body = await request.body()  # capped where the route is included (413 past the cap)
    message = decode_request(
        body, media_type(request), model.types.request, model.types.request_validator
    )
    return model, message
