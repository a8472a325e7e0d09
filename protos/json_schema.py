"""JSON Schema (OpenAPI 3.1 dialect) and default-filled examples from protobuf descriptors.

The schema is the contract: the gateway validates every JSON body against it
(`protos.validation`) before converting it, so it says exactly what is accepted. Within the
proto3 JSON mapping that means: field names as in the .proto or in lowerCamelCase (not both),
`null` for any field (its default), no other property; 32-bit integers as JSON integers,
64-bit integers as strings or JSON integers, in range; floats as numbers (in float32 range
for `float`: json_format refuses its own rendering of float32's very largest values,
3.4028235e+38, so the schema stops just below it) or "NaN"/"Infinity"/"-Infinity"; bytes as
base64 (standard or URL-safe, padding optional); enums by name; maps as objects whose keys match
the key type; well-known types in their special forms. Every message becomes a named
component so recursive messages are expressed with `$ref`.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

FD = FieldDescriptor
INT32_TYPES = {FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32}
UINT32_TYPES = {FD.TYPE_UINT32, FD.TYPE_FIXED32}
INT64_TYPES = {FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64}
UINT64_TYPES = {FD.TYPE_UINT64, FD.TYPE_FIXED64}
FLOAT_TYPES = {FD.TYPE_FLOAT, FD.TYPE_DOUBLE}

_SPECIAL_FLOATS = {"type": "string", "enum": ["NaN", "Infinity", "-Infinity"]}
_FLOAT32_MAX = 3.4028234663852886e38
_FLOAT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": -_FLOAT32_MAX, "maximum": _FLOAT32_MAX},
        _SPECIAL_FLOATS,
    ]
}
_DOUBLE_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "number"}, _SPECIAL_FLOATS]}


def digits_up_to(bound: int) -> str:
    """A regex (no anchors) for the decimal numbers 0..`bound`, as written without sign."""
    text = str(bound)
    options = [f"[0-9]{{1,{len(text) - 1}}}"] if len(text) > 1 else []
    for i, digit in enumerate(text):
        if digit != "0":
            rest = len(text) - i - 1
            options.append(
                text[:i] + f"[0-{int(digit) - 1}]" + (f"[0-9]{{{rest}}}" if rest else "")
            )
    options.append(text)
    return "(?:" + "|".join(options) + ")"


def integer_text(minimum: int, maximum: int) -> str:
    """An anchored regex for the integers minimum..maximum written as text."""
    positive = digits_up_to(maximum)
    if minimum >= 0:
        return f"^{positive}$"
    return f"^(?:{positive}|-{digits_up_to(-minimum)})$"


INT32_RANGE = (-(2**31), 2**31 - 1)
UINT32_RANGE = (0, 2**32 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)
UINT64_RANGE = (0, 2**64 - 1)
# 64-bit integers travel as strings (JSON numbers lose precision past 2**53); JSON integers in
# range are accepted too.
_INT64_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "int64", "pattern": integer_text(*INT64_RANGE)},
        {"type": "integer", "minimum": INT64_RANGE[0], "maximum": INT64_RANGE[1]},
    ]
}
_UINT64_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "uint64", "pattern": integer_text(*UINT64_RANGE)},
        {"type": "integer", "minimum": UINT64_RANGE[0], "maximum": UINT64_RANGE[1]},
    ]
}
# Groups of four base64 characters, the last one short (2 or 3) with optional padding.
_B64 = "[A-Za-z0-9+/_-]"
BASE64_PATTERN = rf"^(?:{_B64}{{4}})*(?:{_B64}{{2}}(?:==)?|{_B64}{{3}}=?)?$"
_BYTES_SCHEMA = {
    "type": "string",
    "format": "byte",
    "contentEncoding": "base64",
    "pattern": BASE64_PATTERN,
}

_WRAPPERS = {
    "google.protobuf.DoubleValue": (_DOUBLE_SCHEMA, 0.0),
    "google.protobuf.FloatValue": (_FLOAT_SCHEMA, 0.0),
    "google.protobuf.Int64Value": (_INT64_SCHEMA, "0"),
    "google.protobuf.UInt64Value": (_UINT64_SCHEMA, "0"),
    "google.protobuf.Int32Value": ({"type": "integer", "format": "int32"}, 0),
    "google.protobuf.UInt32Value": (
        {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1},
        0,
    ),
    "google.protobuf.BoolValue": ({"type": "boolean"}, False),
    "google.protobuf.StringValue": ({"type": "string"}, ""),
    "google.protobuf.BytesValue": (_BYTES_SCHEMA, ""),
}
# Well-known types with a special JSON form: (schema, example).
_SPECIAL: dict[str, tuple[dict[str, Any], Any]] = {
    "google.protobuf.Timestamp": (
        {"type": "string", "format": "date-time", "description": "RFC 3339, UTC ('Z')."},
        "1970-01-01T00:00:00Z",
    ),
    "google.protobuf.Duration": (
        {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$", "description": "e.g. '1.5s'"},
        "0s",
    ),
    "google.protobuf.FieldMask": ({"type": "string", "description": "Comma-separated paths."}, ""),
    "google.protobuf.Struct": ({"type": "object"}, {}),
    "google.protobuf.Value": ({"description": "Any JSON value."}, None),
    "google.protobuf.ListValue": ({"type": "array"}, []),
    "google.protobuf.Empty": ({"type": "object", "maxProperties": 0}, {}),
    "google.protobuf.Any": (
        {
            "type": "object",
            "properties": {"@type": {"type": "string"}},
            "description": "A message of the type named by '@type', with its fields "
            "({} when empty).",
        },
        {},
    ),
    **{name: (schema, example) for name, (schema, example) in _WRAPPERS.items()},
}


def component_name(descriptor: Descriptor) -> str:
    """The OpenAPI component name of a message: its full name."""
    return descriptor.full_name


def message_schemas(descriptor: Descriptor) -> dict[str, dict[str, Any]]:
    """Schemas of `descriptor` and every message it reaches, keyed by `component_name`.

    Wrapper and other well-known types are inlined, never components.
    """
    schemas: dict[str, dict[str, Any]] = {}
    _collect(descriptor, schemas)
    return schemas


def ref(descriptor: Descriptor, prefix: str = "#/components/schemas/") -> dict[str, Any]:
    special = _SPECIAL.get(descriptor.full_name)
    if special is not None:
        return dict(special[0])
    return {"$ref": prefix + component_name(descriptor)}


def _is_map(field: FieldDescriptor) -> bool:
    message = field.message_type
    return field.type == FD.TYPE_MESSAGE and message is not None and message.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return bool(field.is_repeated)


def _real_oneofs(descriptor: Descriptor) -> list[Any]:
    # proto3 `optional` fields sit in a synthetic oneof named "_<field>" of one field.
    return [
        oneof
        for oneof in descriptor.oneofs
        if not (len(oneof.fields) == 1 and oneof.name == "_" + oneof.fields[0].name)
    ]


def _names(field: FieldDescriptor) -> list[str]:
    """The JSON names a field may be given under: as in the .proto, and lowerCamelCase."""
    return [field.name] if field.json_name == field.name else [field.name, field.json_name]


def _collect(descriptor: Descriptor, schemas: dict[str, dict[str, Any]]) -> None:
    name = component_name(descriptor)
    if name in schemas or descriptor.full_name in _SPECIAL:
        return
    schemas[name] = {}  # placeholder first: recursion stops here
    properties: dict[str, Any] = {}
    constraints: list[dict[str, Any]] = []
    for field in descriptor.fields:
        field_schema = _nullable(_field_schema(field, schemas))
        names = _names(field)
        properties[field.name] = field_schema
        if len(names) == 2:
            properties[field.json_name] = {
                **field_schema,
                "description": f"Another spelling of `{field.name}` (give one of them).",
            }
            constraints.append({"not": {"required": names}})
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "title": descriptor.name,
    }
    for oneof in _real_oneofs(descriptor):
        members = [_names(field) for field in oneof.fields]
        for i, first in enumerate(members):
            for second in members[i + 1 :]:
                constraints += [{"not": {"required": [a, b]}} for a in first for b in second]
    if constraints:
        schema["allOf"] = constraints
    if _real_oneofs(descriptor):
        groups = ", ".join(
            f"{oneof.name} ({' | '.join(f.name for f in oneof.fields)})"
            for oneof in _real_oneofs(descriptor)
        )
        schema["description"] = f"Set at most one field of each oneof: {groups}."
    schemas[name] = schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null: proto3 JSON reads null as the field's default."""
    kind = schema.get("type")
    combined = {"anyOf", "$ref", "allOf", "oneOf"} & schema.keys()
    if kind == "null" or (kind is None and not combined):
        return schema  # null is already allowed (NullValue, or any JSON value)
    if isinstance(kind, str) and not combined:
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def _scalar_schema(field: FieldDescriptor, schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    kind = field.type
    if kind == FD.TYPE_MESSAGE:
        _collect(field.message_type, schemas)
        return ref(field.message_type)
    if kind == FD.TYPE_ENUM:
        enum = field.enum_type
        if enum.full_name == "google.protobuf.NullValue":
            return {"type": "null"}
        return {"type": "string", "enum": [value.name for value in enum.values]}
    if kind == FD.TYPE_FLOAT:
        return dict(_FLOAT_SCHEMA, format="float")
    if kind == FD.TYPE_DOUBLE:
        return dict(_DOUBLE_SCHEMA, format="double")
    if kind in INT32_TYPES:
        return {
            "type": "integer",
            "format": "int32",
            "minimum": INT32_RANGE[0],
            "maximum": INT32_RANGE[1],
        }
    if kind in UINT32_TYPES:
        return {"type": "integer", "format": "int64", "minimum": 0, "maximum": UINT32_RANGE[1]}
    if kind in INT64_TYPES:
        return dict(_INT64_SCHEMA)
    if kind in UINT64_TYPES:
        return dict(_UINT64_SCHEMA)
    if kind == FD.TYPE_BOOL:
        return {"type": "boolean"}
    if kind == FD.TYPE_BYTES:
        return dict(_BYTES_SCHEMA)
    return {"type": "string"}


def _field_schema(field: FieldDescriptor, schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if _is_map(field):
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        schema = {"type": "object", "additionalProperties": _scalar_schema(value_field, schemas)}
        key_pattern = _MAP_KEY_PATTERNS.get(key_field.type)
        if key_pattern is not None:
            schema["propertyNames"] = {"pattern": key_pattern}
        return schema
    item = _scalar_schema(field, schemas)
    if _is_repeated(field):
        return {"type": "array", "items": item}
    return item


# JSON object keys are strings; integer and bool map keys are written as their text.
_MAP_KEY_PATTERNS = {
    **dict.fromkeys(INT32_TYPES, integer_text(*INT32_RANGE)),
    **dict.fromkeys(UINT32_TYPES, integer_text(*UINT32_RANGE)),
    **dict.fromkeys(INT64_TYPES, integer_text(*INT64_RANGE)),
    **dict.fromkeys(UINT64_TYPES, integer_text(*UINT64_RANGE)),
    FD.TYPE_BOOL: r"^(true|false)$",
}
_MAP_KEY_EXAMPLES = {
    **dict.fromkeys(INT32_TYPES | INT64_TYPES | UINT32_TYPES | UINT64_TYPES, "0"),
    FD.TYPE_BOOL: "false",
}


def example(descriptor: Descriptor, _depth: int = 0) -> dict[str, Any]:
    """A JSON example of the message with every field at its default value.

    Repeated fields and maps hold one default element so their shape shows; a recursive
    message stops after a few levels with an empty object.
    """
    if _depth > 3:
        return {}
    oneof_taken: set[str] = set()
    result: dict[str, Any] = {}
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and oneof in _real_oneofs(descriptor):
            if oneof.name in oneof_taken:
                continue  # at most one member of a oneof may be set
            oneof_taken.add(oneof.name)
        if _is_map(field):
            key_type = field.message_type.fields_by_name["key"].type
            value_field = field.message_type.fields_by_name["value"]
            key = _MAP_KEY_EXAMPLES.get(key_type, "key")
            result[field.name] = {key: _scalar_example(value_field, _depth)}
        elif _is_repeated(field):
            result[field.name] = [_scalar_example(field, _depth)]
        else:
            result[field.name] = _scalar_example(field, _depth)
    return result


def _scalar_example(field: FieldDescriptor, depth: int) -> Any:
    kind = field.type
    if kind == FD.TYPE_MESSAGE:
        special = _SPECIAL.get(field.message_type.full_name)
        if special is not None:
            return special[1]
        return example(field.message_type, depth + 1)
    if kind == FD.TYPE_ENUM:
        if field.enum_type.full_name == "google.protobuf.NullValue":
            return None
        return field.enum_type.values[0].name
    if kind in FLOAT_TYPES:
        return 0.0
    if kind in INT64_TYPES or kind in UINT64_TYPES:
        return "0"
    if kind in INT32_TYPES or kind in UINT32_TYPES:
        return 0
    if kind == FD.TYPE_BOOL:
        return False
    return ""
