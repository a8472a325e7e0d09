"""JSON and protobuf bodies to and from protobuf messages, with errors a client can act on.

JSON follows the proto3 JSON mapping (`google.protobuf.json_format`): field names in
lowerCamelCase or as written in the .proto, bytes as base64, 64-bit integers as strings.
"""

from __future__ import annotations

import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
# Standard or URL-safe alphabet, padding optional (proto3 JSON accepts all four forms).
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]*={0,2}$")
JSON_CONTENT_TYPE = "application/json"


class DecodeFailed(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


class JsonMismatch(ValueError):
    """A JSON document that does not match the expected message (names the field)."""


def message_from_json(body: bytes | str, message_cls: type[Message]) -> Message:
    """Parse a JSON document into `message_cls`.

    Raises:
        DecodeFailed: the body is not JSON at all.
        JsonMismatch: the JSON is not an object or does not match the message.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeFailed(f"body is not valid JSON: {exc}") from exc
    return message_from_dict(data, message_cls)


def message_from_dict(data: Any, message_cls: type[Message]) -> Message:
    """Convert an already parsed JSON value into `message_cls` (see `message_from_json`)."""
    if not isinstance(data, dict):
        raise JsonMismatch(
            f"expected a JSON object for {message_cls.DESCRIPTOR.full_name}, "
            f"got {type(data).__name__}"
        )
    _check_base64(data, message_cls.DESCRIPTOR, "")
    message = message_cls()
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        raise JsonMismatch(str(exc)) from exc
    except (ValueError, TypeError, RecursionError) as exc:  # pragma: no cover - defensive
        raise JsonMismatch(f"cannot convert to {message_cls.DESCRIPTOR.full_name}: {exc}") from exc
    return message


def _check_base64(data: dict[str, Any], descriptor: Descriptor, path: str) -> None:
    """Refuse base64 that json_format would silently mangle (it skips foreign characters)."""
    fields = {f.name: f for f in descriptor.fields} | {f.json_name: f for f in descriptor.fields}
    for key, value in data.items():
        field = fields.get(key)
        if field is None or value is None:
            continue  # unknown names are json_format's to report
        where = f"{path}{field.name}"
        message_type = field.message_type
        if message_type is not None and message_type.GetOptions().map_entry:
            value_field = message_type.fields_by_name["value"]
            if isinstance(value, dict):
                for map_key, item in value.items():
                    _check_value(item, value_field, f"{where}[{map_key!r}]")
        elif field.is_repeated and isinstance(value, list):
            for index, item in enumerate(value):
                _check_value(item, field, f"{where}[{index}]")
        else:
            _check_value(value, field, where)


def _check_value(value: Any, field: FieldDescriptor, where: str) -> None:
    if field.type == FieldDescriptor.TYPE_BYTES:
        if isinstance(value, str) and not _BASE64.match(value.replace("\n", "")):
            raise JsonMismatch(f"field {where}: not valid base64")
    elif (
        field.type == FieldDescriptor.TYPE_MESSAGE
        and isinstance(value, dict)
        and not field.message_type.full_name.startswith("google.protobuf.")
    ):
        _check_base64(value, field.message_type, where + ".")


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
