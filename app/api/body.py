"""Reading a task body: size-capped while streaming, then decoded by its content type."""

from __future__ import annotations

from fastapi import Request
from google.protobuf.message import Message

from app.core.errors import BadRequest, InvalidInput, PayloadTooLarge, UnsupportedMediaType
from protos.codec import (
    PROTOBUF_CONTENT_TYPE,
    DecodeFailed,
    JsonMismatch,
    message_from_bytes,
    message_from_json,
)

PROTOBUF_TYPES = {PROTOBUF_CONTENT_TYPE, "application/protobuf", "application/octet-stream"}
JSON_TYPES = {"application/json", ""}


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, refusing (413) as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError as exc:
            raise BadRequest("invalid Content-Length header") from exc
        if too_big:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def decode_request(body: bytes, content_type: str, message_cls: type[Message]) -> Message:
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
            return message_from_json(body, message_cls)
        except DecodeFailed as exc:
            raise BadRequest(str(exc)) from exc
        except JsonMismatch as exc:
            raise InvalidInput(str(exc)) from exc
    raise UnsupportedMediaType(
        f"send application/json or {PROTOBUF_CONTENT_TYPE}, not {content_type!r}"
    )
