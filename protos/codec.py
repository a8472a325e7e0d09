"""JSON and protobuf bodies to and from protobuf messages, with errors a client can act on.

JSON follows the proto3 JSON mapping (`google.protobuf.json_format`): field names in
lowerCamelCase or as written in the .proto, bytes as base64, 64-bit integers as strings.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from protos.validation import MessageValidator

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"


class DecodeFailed(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


class JsonMismatch(ValueError):
    """A JSON document that does not match the expected message (names the field)."""


def message_from_json(
    body: bytes | str, message_cls: type[Message], validator: MessageValidator | None = None
) -> Message:
    """Parse a JSON document into `message_cls`.

    Raises:
        DecodeFailed: the body is not JSON at all.
        JsonMismatch: the JSON is not an object or does not match the message.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeFailed(f"body is not valid JSON: {exc}") from exc
    return message_from_dict(data, message_cls, validator)


def message_from_dict(
    data: Any, message_cls: type[Message], validator: MessageValidator | None = None
) -> Message:
    """Convert an already parsed JSON value into `message_cls`.

    With a `validator` (the gateway always passes one) the value must match the message's
    published JSON Schema first; `json_format` alone is more lenient.
    """
    if not isinstance(data, dict):
        raise JsonMismatch(
            f"expected a JSON object for {message_cls.DESCRIPTOR.full_name}, "
            f"got {type(data).__name__}"
        )
    if validator is not None:
        problem = validator.problem(data)
        if problem is not None:
            raise JsonMismatch(problem)
    message = message_cls()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise JsonMismatch(str(exc)) from exc
    except (ValueError, TypeError, RecursionError) as exc:  # pragma: no cover - defensive
        raise JsonMismatch(f"cannot convert to {message_cls.DESCRIPTOR.full_name}: {exc}") from exc
    return message


def message_from_bytes(body: bytes, message_cls: type[Message]) -> Message:
    """Parse protobuf wire bytes into `message_cls`.

    Raises:
        DecodeFailed: the bytes are not a valid encoding of the message.
    """
    message = message_cls()
    try:
        message.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise DecodeFailed(
            f"body is not a valid {message_cls.DESCRIPTOR.full_name} protobuf: {exc}"
        ) from exc
    return message


def message_to_dict(message: Message) -> dict[str, Any]:
    """Convert a message to its proto3 JSON form, with every field present (defaults included)."""
    result: dict[str, Any] = json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
    )
    return result
