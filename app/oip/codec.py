"""Open Inference Protocol v2 (KServe/Triton REST): a model's messages as named tensors.

A request message is callable through the protocol when it is flat: every field a scalar or a
repeated scalar. Each field is one tensor named after it: a scalar has shape [1], a repeated
field shape [n]; strings, bytes and enums (by name) are BYTES. Response fields that are not
flat (messages, maps) come back as one BYTES element holding the field's proto3 JSON.

Tensor data travels as JSON, or raw with the binary tensor data extension (tritonclient's
default): the JSON header comes first, `Inference-Header-Content-Length` says how long it is,
and each binary tensor's bytes follow in order (`parameters.binary_data_size`), numbers
little-endian, each BYTES element prefixed by its 4-byte little-endian length.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from app.catalog.catalog import LiveModel, ModelCatalog
from app.core.errors import BadRequest
from protos.codec import DecodeFailed, load_json, message_to_dict

FD = FieldDescriptor
HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_SIZE = "binary_data_size"

# datatype, struct format of one element (None: BYTES)
_TYPES: dict[int, tuple[str, str | None]] = {
    FD.TYPE_FLOAT: ("FP32", "f"),
    FD.TYPE_DOUBLE: ("FP64", "d"),
    FD.TYPE_INT32: ("INT32", "i"),
    FD.TYPE_SINT32: ("INT32", "i"),
    FD.TYPE_SFIXED32: ("INT32", "i"),
    FD.TYPE_INT64: ("INT64", "q"),
    FD.TYPE_SINT64: ("INT64", "q"),
    FD.TYPE_SFIXED64: ("INT64", "q"),
    FD.TYPE_UINT32: ("UINT32", "I"),
    FD.TYPE_FIXED32: ("UINT32", "I"),
    FD.TYPE_UINT64: ("UINT64", "Q"),
    FD.TYPE_FIXED64: ("UINT64", "Q"),
    FD.TYPE_BOOL: ("BOOL", "?"),
    FD.TYPE_STRING: ("BYTES", None),
    FD.TYPE_BYTES: ("BYTES", None),
    FD.TYPE_ENUM: ("BYTES", None),
}


class TensorError(ValueError):
    """A request that does not map onto the model's request message (the client's fault)."""


async def flat_model(catalog: ModelCatalog, name: str) -> LiveModel:
    """The live model `name`, whose request message must be flat.

    Raises:
        BadRequest: it is not flat (why, and what to use instead).
        ModelNotFound, ModelUnavailable, Unavailable: as `ModelCatalog.get`.
    """
    model = await catalog.get(name)
    problem = flat_problem(model.types.request.DESCRIPTOR)
    if problem is not None:
        raise BadRequest(problem)
    return model


def _is_flat(field: FieldDescriptor) -> bool:
    return field.type in _TYPES


def flat_problem(descriptor: Any) -> str | None:
    """Why requests of this message cannot travel as tensors, or None when they can."""
    nested = [f.name for f in descriptor.fields if not _is_flat(f)]
    if nested:
        return (
            f"{descriptor.full_name} is not flat: field(s) {', '.join(nested)} are messages or "
            "maps; the Open Inference Protocol maps only scalar and repeated scalar fields "
            "(use POST /models/{name}/infer)"
        )
    return None


def tensor_metadata(descriptor: Any) -> list[dict[str, Any]]:
    """Name, datatype and shape of the tensor of every field (-1: any length)."""
    tensors = []
    for field in descriptor.fields:
        datatype = _TYPES[field.type][0] if _is_flat(field) else "BYTES"
        shape = [-1] if field.is_repeated and _is_flat(field) else [1]
        tensors.append({"name": field.name, "datatype": datatype, "shape": shape})
    return tensors


# ---- decoding a request ----------------------------------------------------------------


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON part of an inference request, and what binary data follows it."""
    try:
        if header_length is None:
            return load_json(body), b""
        length = int(header_length)
        if not 0 < length <= len(body):
            raise TensorError(f"{HEADER_LENGTH} {length} does not fit a body of {len(body)} bytes")
        return load_json(body[:length]), body[length:]
    except DecodeFailed as exc:
        raise TensorError(f"the inference request is not valid: {exc}") from exc
    except ValueError as exc:
        if isinstance(exc, TensorError):
            raise
        raise TensorError(f"{HEADER_LENGTH} is not a number: {exc}") from exc


def request_message(
    document: Any, binary: bytes, message_cls: type[Message]
) -> tuple[Message, list[dict[str, Any]]]:
    """The request message the `inputs` describe, and the outputs the client asked for."""
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise TensorError("an inference request is an object with an `inputs` list")
    if not document["inputs"]:
        raise TensorError("`inputs` is empty: a model has at least one input")
    descriptor = message_cls.DESCRIPTOR
    message = message_cls()
    offset = 0
    for tensor in document["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise TensorError("every input is an object with a `name`")
        field = descriptor.fields_by_name.get(tensor["name"])
        if field is None:
            names = ", ".join(f.name for f in descriptor.fields)
            raise TensorError(f"no input named {tensor['name']!r}; inputs are: {names}")
        datatype, fmt = _TYPES[field.type]
        if tensor.get("datatype") != datatype:
            raise TensorError(f"input {field.name!r} is {datatype}, not {tensor.get('datatype')}")
        parameters = tensor.get("parameters") or {}
        size = parameters.get(BINARY_SIZE) if isinstance(parameters, dict) else None
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise TensorError(f"input {field.name!r}: binary_data_size does not fit")
            values = _unpack(binary[offset : offset + size], fmt, field.name)
            offset += size
        else:
            values = list(_flatten(tensor.get("data"), field.name))
        _check_shape(tensor.get("shape"), len(values), field)
        _set(message, field, values)
    outputs = document.get("outputs", [])
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise TensorError("`outputs` is a list of objects with a `name`")
    return message, outputs


def _flatten(data: Any, name: str) -> Iterable[Any]:
    if data is None:
        raise TensorError(f"input {name!r} has no `data`")
    if isinstance(data, list):
        for item in data:
            if isinstance(item, list):
                yield from _flatten(item, name)
            else:
                yield item
    else:
        yield data


def _unpack(raw: bytes, fmt: str | None, name: str) -> list[Any]:
    if fmt is None:
        values, position = [], 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise TensorError(f"input {name!r}: truncated BYTES element")
            (length,) = struct.unpack_from("<I", raw, position)
            position += 4
            values.append(raw[position : position + length])
            position += length
        return values
    width = struct.calcsize("<" + fmt)
    if len(raw) % width:
        raise TensorError(f"input {name!r}: {len(raw)} bytes is not a whole number of elements")
    return list(struct.unpack(f"<{len(raw) // width}{fmt}", raw))


def _check_shape(shape: Any, count: int, field: FieldDescriptor) -> None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise TensorError(f"input {field.name!r}: `shape` is a list of sizes")
    expected = 1
    for dimension in shape:
        expected *= dimension
    if expected != count:
        raise TensorError(f"input {field.name!r}: shape {shape} holds {expected}, not {count}")
    if not field.is_repeated and count != 1:
        raise TensorError(f"input {field.name!r} is a single value (shape [1]), not {count}")


def _set(message: Message, field: FieldDescriptor, values: list[Any]) -> None:
    converted = [_convert(value, field) for value in values]
    try:
        if field.is_repeated:
            getattr(message, field.name).extend(converted)
        else:
            setattr(message, field.name, converted[0])
    except (TypeError, ValueError) as exc:
        raise TensorError(f"input {field.name!r}: {exc}") from exc


def _convert(value: Any, field: FieldDescriptor) -> Any:
    kind = field.type
    if kind == FD.TYPE_BYTES:
        return value if isinstance(value, bytes) else str(value).encode()
    if kind in (FD.TYPE_STRING, FD.TYPE_ENUM):
        text = value.decode() if isinstance(value, bytes) else value
        if not isinstance(text, str):
            raise TensorError(f"input {field.name!r} holds strings")
        if kind == FD.TYPE_ENUM:
            member = field.enum_type.values_by_name.get(text)
            if member is None:
                raise TensorError(f"input {field.name!r}: {text!r} is not one of its values")
            return member.number
        return text
    if kind == FD.TYPE_BOOL:
        if not isinstance(value, bool):
            raise TensorError(f"input {field.name!r} holds booleans")
        return value
    if kind in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TensorError(f"input {field.name!r} holds numbers")
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TensorError(f"input {field.name!r} holds integers")
    return value


# ---- encoding a response ---------------------------------------------------------------


def output_tensors(
    message: Message, requested: list[dict[str, Any]]
) -> list[tuple[str, str, int, bytes]]:
    """Each output the client asked for (all when it named none) as its name, datatype,
    element count and raw little-endian bytes (BYTES elements length-prefixed), for the
    protocol's gRPC form.

    Raises:
        TensorError: an output asked for that the response message has not.
    """
    descriptor = message.DESCRIPTOR
    wanted = {o["name"] for o in requested}
    unknown = wanted - set(descriptor.fields_by_name)
    if unknown:
        raise TensorError(f"no output named {sorted(unknown)}")
    as_json = message_to_dict(message)
    tensors = []
    for field in descriptor.fields:
        if wanted and field.name not in wanted:
            continue
        values, datatype = _output_values(message, field, as_json)
        fmt = None if datatype == "BYTES" else _TYPES[field.type][1]
        tensors.append((field.name, datatype, len(values), _pack(values, fmt)))
    return tensors


def response_body(
    message: Message,
    *,
    model: str,
    version: str,
    request_id: str | None,
    requested: list[dict[str, Any]],
    binary_by_default: bool = False,
) -> tuple[bytes, int | None]:
    """The inference response, and the JSON header's length when binary data follows."""
    descriptor = message.DESCRIPTOR
    wanted = {o["name"]: o for o in requested}
    unknown = set(wanted) - set(descriptor.fields_by_name)
    if unknown:
        raise TensorError(f"no output named {sorted(unknown)}")
    outputs, blobs = [], []
    as_json = message_to_dict(message)
    for field in descriptor.fields:
        if wanted and field.name not in wanted:
            continue
        values, datatype = _output_values(message, field, as_json)
        tensor: dict[str, Any] = {"name": field.name, "datatype": datatype, "shape": [len(values)]}
        parameters = (wanted.get(field.name) or {}).get("parameters") or {}
        if parameters.get("binary_data", binary_by_default):
            fmt = None if datatype == "BYTES" else _TYPES[field.type][1]
            blob = _pack(values, fmt)
            tensor["parameters"] = {BINARY_SIZE: len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = [
                v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values
            ]
        outputs.append(tensor)
    document: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if request_id is not None:
        document["id"] = request_id
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def _output_values(
    message: Message, field: FieldDescriptor, as_json: dict[str, Any]
) -> tuple[list[Any], str]:
    if not _is_flat(field):
        return [json.dumps(as_json.get(field.name), separators=(",", ":")).encode()], "BYTES"
    datatype = _TYPES[field.type][0]
    raw = getattr(message, field.name)
    values = list(raw) if field.is_repeated else [raw]
    if field.type == FD.TYPE_ENUM:
        enum: Any = field.enum_type
        values = [enum.values_by_number[v].name.encode() for v in values]
    elif field.type == FD.TYPE_STRING:
        values = [v.encode() for v in values]
    return values, datatype


def _pack(values: list[Any], fmt: str | None) -> bytes:
    if fmt is None:
        return b"".join(struct.pack("<I", len(v)) + v for v in values)
    return struct.pack(f"<{len(values)}{fmt}", *values)
