"""The gateway's OpenAPI document is valid 3.1 and documents every live model."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from app.catalog.catalog import LiveModel
from app.core.settings import Settings
from app.openapi import base_openapi, with_models
from protos.descriptors import MessageTypes, descriptor_set, fingerprint
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.example_pb2 import ExampleModelRequest, ExampleModelResponse
from registry.schemas import ModelView
from tests.utils.protos import compile_messages


def live(name, request, response, description="does things"):
    view = ModelView(
        name=name,
        request_type=request.DESCRIPTOR.full_name,
        response_type=response.DESCRIPTOR.full_name,
        descriptor_set=descriptor_set(request, response),
        fingerprint=fingerprint(request, response),
        description=description,
        instances=1,
    )
    types = MessageTypes.from_descriptor_set(
        view.descriptor_set, view.request_type, view.response_type
    )
    return LiveModel(view=view, types=types)


@pytest.fixture(scope="module")
def base():
    from app.main import create_app

    app = create_app(settings=Settings(jwt_secret="x" * 40), registry=object())  # type: ignore[arg-type]
    return base_openapi(app)


def test_static_document_is_valid(base):
    validate(base)
    assert {"/register", "/login", "/models", "/health/ready"} <= set(base["paths"])


def test_models_add_two_operations_each_and_stay_valid(base, tmp_path):
    sink = compile_messages("kitchen_sink.proto", tmp_path)["testing.KitchenSink"]
    spec = with_models(
        base,
        [
            live("summarizer", ExampleModelRequest, ExampleModelResponse, "Summarizes."),
            live("echo", EchoRequest, EchoResponse),
            live("sink", sink, sink),
        ],
    )
    validate(spec)
    submit = spec["paths"]["/models/summarizer/tasks"]["post"]
    body = submit["requestBody"]["content"]
    assert body["application/json"]["schema"] == {
        "$ref": "#/components/schemas/example.ExampleModelRequest"
    }
    assert body["application/json"]["example"] == {"file": {"content": ""}, "author": ""}
    assert "application/x-protobuf" in body
    assert submit["description"].startswith("Summarizes.")
    assert submit["security"] == [{"OAuth2PasswordBearer": []}]
    result = spec["paths"]["/models/summarizer/result"]["get"]
    assert "application/x-protobuf" in result["responses"]["200"]["content"]
    schemas = spec["components"]["schemas"]
    assert "example.File" in schemas and "testing.Tree" in schemas
    assert "ErrorOut" in schemas and "TaskDocument" in schemas
    assert base["paths"].get("/models/echo/tasks") is None, "the base document is not modified"


def test_same_message_name_other_shape__kept_apart(base, tmp_path):
    # Two models whose request messages share a full name but not a shape.
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    def make(field):
        file = descriptor_pb2.FileDescriptorProto(name="x.proto", package="x", syntax="proto3")
        message = file.message_type.add(name="Req")
        message.field.add(name=field, number=1, type=9, label=1)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(file)
        return message_factory.GetMessageClass(pool.FindMessageTypeByName("x.Req"))

    first, second = make("a"), make("b")
    spec = with_models(base, [live("one", first, first), live("two", second, second)])
    validate(spec)
    refs = {
        name: spec["paths"][f"/models/{name}/tasks"]["post"]["requestBody"]["content"][
            "application/json"
        ]["schema"]["$ref"]
        for name in ("one", "two")
    }
    assert refs["one"] != refs["two"]
    schemas = spec["components"]["schemas"]
    assert {
        schemas[ref.rsplit("/", 1)[1]]["properties"].keys().__iter__().__next__()
        for ref in refs.values()
    } == {"a", "b"}
