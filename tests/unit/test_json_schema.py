"""The generated JSON Schema accepts exactly what json_format writes, for every field kind."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos.codec import JsonMismatch, message_from_dict, message_to_dict
from protos.json_schema import BASE64_PATTERN, component_name, example, message_schemas
from protos.validation import MessageValidator
from tests.utils.protos import compile_messages


@pytest.fixture(scope="module")
def messages(tmp_path_factory) -> dict[str, Any]:
    return compile_messages("kitchen_sink.proto", tmp_path_factory.mktemp("proto"))


@pytest.fixture(scope="module")
def validator(messages):
    descriptor = messages["testing.KitchenSink"].DESCRIPTOR
    document = {
        "components": {"schemas": message_schemas(descriptor)},
        "$ref": f"#/components/schemas/{component_name(descriptor)}",
    }
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


def scalar(field, depth):
    kind = field.type
    if kind in INT_RANGES:
        return st.integers(*INT_RANGES[kind])
    if kind == FD.TYPE_DOUBLE:
        return st.floats(allow_nan=True, allow_infinity=True)
    if kind == FD.TYPE_FLOAT:
        # json_format writes float32's largest values as 3.4028235e+38 and refuses that on
        # input; the schema takes what json_format reads, so those few values are left out.
        return st.floats(width=32, allow_nan=True, allow_infinity=True).filter(
            lambda v: not 3.4028e38 < abs(v) < float("inf")
        )
    if kind == FD.TYPE_BOOL:
        return st.booleans()
    if kind == FD.TYPE_STRING:
        return st.text(max_size=8)
    if kind == FD.TYPE_BYTES:
        return st.binary(max_size=8)
    if kind == FD.TYPE_ENUM:
        return st.sampled_from([v.number for v in field.enum_type.values])
    return None  # messages are filled separately


def fill(draw, message, depth=0):
    """Set a random subset of fields of `message` (in place), recursing into messages."""
    descriptor = message.DESCRIPTOR
    if descriptor.full_name.startswith("google.protobuf."):
        return  # well-known types stay at their defaults (still rendered specially)
    chosen_oneof = {}
    for oneof in descriptor.oneofs:
        chosen_oneof[oneof.name] = draw(st.sampled_from([None, *[f.name for f in oneof.fields]]))
    for field in descriptor.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen_oneof.get(oneof.name) != field.name:
            continue
        if not draw(st.booleans()):
            continue
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            key_field = field.message_type.fields_by_name["key"]
            value_field = field.message_type.fields_by_name["value"]
            for key in draw(st.lists(scalar(key_field, depth), max_size=2)):
                if value_field.type == FD.TYPE_MESSAGE:
                    fill(draw, getattr(message, field.name)[key], depth + 1)
                else:
                    getattr(message, field.name)[key] = draw(scalar(value_field, depth))
        elif field.type == FD.TYPE_MESSAGE:
            if depth > 2:
                continue
            if field.is_repeated:
                for _ in range(draw(st.integers(0, 2))):
                    fill(draw, getattr(message, field.name).add(), depth + 1)
            else:
                getattr(message, field.name).SetInParent()
                fill(draw, getattr(message, field.name), depth + 1)
        elif field.is_repeated:
            getattr(message, field.name).extend(draw(st.lists(scalar(field, depth), max_size=3)))
        else:
            setattr(message, field.name, draw(scalar(field, depth)))


@st.composite
def kitchen_sinks(draw, cls):
    message = cls()
    fill(draw, message)
    return message


def test_schema_validates_json_format_output(messages, validator):
    cls = messages["testing.KitchenSink"]
    compiled = MessageValidator(cls.DESCRIPTOR)._fast

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kitchen_sinks(cls))
    def check(message):
        document = message_to_dict(message)
        errors = list(validator.iter_errors(document))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
        compiled(document)  # the fast path takes it too

    check()


def _plain(schema):
    """A field's schema without its `null` alternative."""
    if isinstance(schema.get("type"), list):
        return {**schema, "type": next(t for t in schema["type"] if t != "null")}
    if "anyOf" in schema and schema["anyOf"][-1] == {"type": "null"}:
        return schema["anyOf"][0]
    return schema


def test_schema_shape_for_each_kind(messages):
    schemas = message_schemas(messages["testing.KitchenSink"].DESCRIPTOR)
    sink_schema = schemas["testing.KitchenSink"]
    assert sink_schema["additionalProperties"] is False
    sink = {name: _plain(schema) for name, schema in sink_schema["properties"].items()}
    assert sink["f_int64"]["anyOf"][0]["format"] == "int64"
    assert sink["f_uint64"]["anyOf"][1] == {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}
    assert sink["f_int32"]["type"] == "integer" and sink["f_int32"]["maximum"] == 2**31 - 1
    assert sink["f_bytes"]["format"] == "byte" and sink["f_bytes"]["pattern"] == BASE64_PATTERN
    assert sink["color"]["enum"] == ["COLOR_UNSPECIFIED", "RED", "GREEN"]
    assert sink["leaves"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/testing.Leaf"},
    }
    assert sink["leaf_map"]["additionalProperties"] == {"$ref": "#/components/schemas/testing.Leaf"}
    assert sink["int_map"]["propertyNames"]["pattern"].startswith("^(?:")
    assert sink["at"]["format"] == "date-time"
    assert sink["wrapped_int64"]["anyOf"][0]["type"] == "string"
    assert sink["f_double"]["anyOf"][1]["enum"] == ["NaN", "Infinity", "-Infinity"]
    assert sink["f_float"]["anyOf"][0]["maximum"] == pytest.approx(3.4028234663852886e38)
    # lowerCamelCase is another spelling of a field, never both at once.
    assert (
        "fDouble" in sink
        and {"not": {"required": ["f_double", "fDouble"]}} in (sink_schema["allOf"])
    )
    tree = schemas["testing.Tree"]["properties"]
    assert _plain(tree["children"])["items"] == {"$ref": "#/components/schemas/testing.Tree"}
    one_of = sink_schema["allOf"]
    assert {"not": {"required": ["choice_text", "choice_leaf"]}} in one_of
    assert {"not": {"required": ["choiceText", "choiceLeaf"]}} in one_of
    assert not any("maybe" in str(c) for c in one_of), "proto3 optional is not a real oneof"


ACCEPTED = [
    {"f_double": None, "f_int32": None, "leaf": None, "tags": None, "leaf_map": None},
    {"fDouble": 1.5, "fInt32": 7, "leafMap": {"k": {"name": "x"}}},
    {"f_int64": "-9223372036854775808", "f_uint64": "18446744073709551615"},
    {"f_int64": "9223372036854775807", "f_sint64": "0", "f_fixed64": "7"},
    {"f_int64": -(2**63), "f_uint64": 2**64 - 1, "f_uint32": 2**32 - 1},
    {"f_float": 3.4e38, "f_double": -1e308, "f_int32": 1.0},
    {"f_float": "NaN", "f_double": "-Infinity"},
    {"f_bytes": "", "blobs": {"a": "ab", "b": "abc", "c": "abcd", "d": "ab==", "e": "a-_b"}},
    {"int_map": {"-2147483648": "x", "2147483647": "y", "0": "z"}, "f_bool": True},
    {"choice_leaf": {"name": "x", "ids": ["1", 2]}},
    {"anything": None, "meta": {"k": [1, None]}, "list": [1, "a"]},
]

REFUSED = [
    {"nope": 1},
    {"f_double": 1, "fDouble": 2},
    {"f_double": "1.5"},
    {"f_double": True},
    {"f_float": 1e39},
    {"f_int32": 2**31},
    {"f_int32": 1.5},
    {"f_int32": "12"},
    {"f_uint32": -1},
    {"f_int64": "9223372036854775808"},
    {"f_int64": "-9223372036854775809"},
    {"f_uint64": "18446744073709551616"},
    {"f_uint64": "-1"},
    {"f_bytes": "a"},
    {"f_bytes": "abcd="},
    {"f_bytes": "***"},
    {"int_map": {"2147483648": "x"}},
    {"leaf_map": {"k": None}},
    {"tags": [None]},
    {"color": 1},
    {"choice_text": "a", "choiceNumber": "1"},
]


@pytest.mark.parametrize("document", ACCEPTED)
def test_what_the_schema_accepts_converts(messages, document):
    cls = messages["testing.KitchenSink"]
    assert MessageValidator(cls.DESCRIPTOR).problem(document) is None
    assert isinstance(message_from_dict(document, cls, MessageValidator(cls.DESCRIPTOR)), cls)


@pytest.mark.parametrize("document", REFUSED)
def test_what_the_schema_refuses_is_refused_with_the_field_named(messages, document):
    cls = messages["testing.KitchenSink"]
    validator = MessageValidator(cls.DESCRIPTOR)
    problem = validator.problem(document)
    assert problem is not None
    with pytest.raises(JsonMismatch):
        message_from_dict(document, cls, validator)


@pytest.mark.parametrize("document", ACCEPTED + REFUSED)
def test_the_compiled_schema_agrees_with_jsonschema(messages, validator, document):
    """The fast path (fastjsonschema) and the reference (jsonschema) give the same verdict."""
    import fastjsonschema

    checker = MessageValidator(messages["testing.KitchenSink"].DESCRIPTOR)
    try:
        checker._fast(document)
        fast_ok = True
    except fastjsonschema.JsonSchemaValueException:
        fast_ok = False
    assert fast_ok == (not list(validator.iter_errors(document)))


def test_a_field_named_format_keeps_its_schema(tmp_path):
    from protos.validation import _without_formats

    schema = {"properties": {"format": {"type": "string", "format": "byte"}}, "format": "x"}
    assert _without_formats(schema) == {"properties": {"format": {"type": "string"}}}


def test_schema_refuses_two_members_of_a_oneof(messages, validator):
    assert list(validator.iter_errors({"choice_text": "a", "choice_number": "1"}))
    assert not list(validator.iter_errors({"choice_text": "a"}))


def test_default_example_parses_back_and_validates(messages, validator):
    cls = messages["testing.KitchenSink"]
    document = example(cls.DESCRIPTOR)
    assert not list(validator.iter_errors(document))
    message = message_from_dict(document, cls)
    assert message.WhichOneof("choice") == "choice_text"
    assert list(message.leaves) and message.leaf_map["key"].name == ""
    assert message.int_map[0] == ""
    assert not math.isnan(message.f_double)


def test_examples_for_the_shipped_models_parse():
    from protos.echo_pb2 import EchoRequest
    from protos.example_pb2 import ExampleModelRequest
    from protos.iris_pb2 import IrisResponse

    for cls in (ExampleModelRequest, EchoRequest, IrisResponse):
        message = message_from_dict(example(cls.DESCRIPTOR), cls)
        assert isinstance(message, cls)


@pytest.mark.parametrize(
    ("low", "high"), [(-(2**31), 2**31 - 1), (0, 2**32 - 1), (-(2**63), 2**63 - 1), (0, 10), (0, 0)]
)
def test_integer_text_patterns_admit_exactly_the_range(low, high):
    import re

    from protos.json_schema import integer_text

    pattern = re.compile(integer_text(low, high))
    inside = {low, high, 0, high // 2, low // 2, high - 1 if high else 0, 9, 10, 99}
    for value in inside:
        if low <= value <= high:
            assert pattern.match(str(value)), value
    for value in (high + 1, high + 10, high * 10 + 1, low - 1):
        if not low <= value <= high:
            assert not pattern.match(str(value)), value
    assert not pattern.match("") and not pattern.match("1a") and not pattern.match("+1")
