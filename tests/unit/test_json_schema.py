"""The generated JSON Schema accepts exactly what json_format writes, for every field kind."""

from __future__ import annotations

import math
from typing import Any

import jsonschema
import pytest
from google.protobuf.descriptor import FieldDescriptor as FD
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protos.codec import message_from_dict, message_to_dict
from protos.json_schema import component_name, example, message_schemas
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
        return st.floats(width=32, allow_nan=True, allow_infinity=True)
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

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kitchen_sinks(cls))
    def check(message):
        document = message_to_dict(message)
        errors = list(validator.iter_errors(document))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]

    check()


def test_schema_shape_for_each_kind(messages):
    schemas = message_schemas(messages["testing.KitchenSink"].DESCRIPTOR)
    sink = schemas["testing.KitchenSink"]["properties"]
    assert sink["f_int64"]["type"] == "string" and sink["f_uint64"]["pattern"] == "^[0-9]+$"
    assert sink["f_int32"]["type"] == "integer"
    assert sink["f_bytes"] == {"type": "string", "format": "byte", "contentEncoding": "base64"}
    assert sink["color"]["enum"] == ["COLOR_UNSPECIFIED", "RED", "GREEN"]
    assert sink["leaves"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/testing.Leaf"},
    }
    assert sink["leaf_map"]["additionalProperties"] == {"$ref": "#/components/schemas/testing.Leaf"}
    assert sink["int_map"]["propertyNames"] == {"pattern": "^-?[0-9]+$"}
    assert sink["at"]["format"] == "date-time"
    assert sink["wrapped_int64"]["type"] == "string"
    assert sink["f_double"]["anyOf"][1]["enum"] == ["NaN", "Infinity", "-Infinity"]
    tree = schemas["testing.Tree"]["properties"]
    assert tree["children"]["items"] == {"$ref": "#/components/schemas/testing.Tree"}
    one_of = schemas["testing.KitchenSink"]["allOf"]
    assert {"not": {"required": ["choice_text", "choice_leaf"]}} in one_of
    assert not any("maybe" in str(c) for c in one_of), "proto3 optional is not a real oneof"


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
