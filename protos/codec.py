"""JSON and protobuf bodies to and from protobuf messages, with errors a client can act on.

JSON follows the proto3 JSON mapping (`google.protobuf.json_format`): field names in
lowerCamelCase or as written in the .proto, bytes as base64, 64-bit integers as strings.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

from protos.validation import MessageValidator

PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
JSON_CONTENT_TYPE = "application/json"
# Deepest nesting of arrays and objects a JSON body may have (protobuf's own JSON parser stops
# at 100; no request message nests this deep). Deeper bodies are refused before anything
# recursive (a schema validator, the protobuf parser) walks them.
MAX_JSON_DEPTH = 64


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
    return message_from_dict(load_json(body), message_cls, validator)


def load_json(body: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON body whose arrays and objects nest at most `max_depth` deep.

    Raises:
        DecodeFailed: not JSON, or nested deeper than `max_depth`.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeFailed(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeFailed(f"JSON nested deeper than {max_depth} levels") from exc
    raw = body.encode() if isinstance(body, str) else body
    # Fewer brackets than the limit cannot nest past it: the walk is for the rare rest.
    if raw.count(b"[") + raw.count(b"{") > max_depth and _depth(data) > max_depth:
        raise DecodeFailed(f"JSON nested deeper than {max_depth} levels")
    return data


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in a parsed JSON value (iterative: no recursion)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


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
    """Convert a message to its proto3 JSON form, with every field present (defaults included).

    Top-level repeated `float` fields (embeddings, tensors) are converted in one vectorised
    step: `json_format` finds each value's shortest round-trip form one by one in Python,
    about 2 ms for a 384-value vector, a large share of a batched model's time per task.
    """
    vectors = _float_vectors(message.DESCRIPTOR)
    if not vectors:
        return _to_dict(message)
    rest = type(message)()
    rest.CopyFrom(message)
    for field in vectors:
        rest.ClearField(field.name)
    converted = _to_dict(rest)
    for field in vectors:
        converted[field.name] = shortest_floats(getattr(message, field.name))
    # Keep the descriptor's field order, as json_format does.
    order = {name: i for i, name in enumerate(message.DESCRIPTOR.fields_by_name)}
    return dict(sorted(converted.items(), key=lambda item: order.get(item[0], len(order))))


def message_to_json(message: Message) -> str:
    """`message_to_dict` as compact JSON text (what task results and chunks store)."""
    return json.dumps(message_to_dict(message), separators=(",", ":"))


def _to_dict(message: Message) -> dict[str, Any]:
    result: dict[str, Any] = json_format.MessageToDict(
        message,
        always_print_fields_with_no_presence=True,
        preserving_proto_field_name=True,
    )
    return result


@functools.cache
def _float_vectors(descriptor: Descriptor) -> tuple[FieldDescriptor, ...]:
    return tuple(
        field
        for field in descriptor.fields
        if field.type == FieldDescriptor.TYPE_FLOAT
        and field.is_repeated
        and field.message_type is None
    )


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def shortest_floats(values: Any) -> list[float | str]:
    """float32 values as proto3 JSON: the shortest decimal that reads back as the same float32
    (numpy's Dragon4, as `json_format` but vectorised); NaN and infinities as strings."""
    texts = np.asarray(values, dtype=np.float32).astype(str)
    return [_NON_FINITE.get(text) or float(text) for text in texts.tolist()]
