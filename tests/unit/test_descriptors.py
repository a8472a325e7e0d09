from __future__ import annotations

from protos.codec import message_from_json, message_to_dict
from protos.descriptors import MessageTypes, descriptor_set, fingerprint
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.example_pb2 import ExampleModelRequest, ExampleModelResponse
from protos.task_pb2 import Task


def test_rebuilt_types_parse_and_serialize_like_the_originals():
    types = MessageTypes.from_descriptor_set(
        descriptor_set(ExampleModelRequest, ExampleModelResponse),
        "example.ExampleModelRequest",
        "example.ExampleModelResponse",
    )
    assert types.request is not ExampleModelRequest
    rebuilt = message_from_json('{"file": {"content": "aGk="}, "author": "x"}', types.request)
    original = ExampleModelRequest.FromString(rebuilt.SerializeToString())
    assert original.file.content == b"hi" and original.author == "x"
    assert message_to_dict(types.response(summary="s")) == {"summary": "s", "fixed_author": ""}


def test_dependencies_come_first_and_well_known_types_travel_along():
    from google.protobuf import descriptor_pb2

    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set(Task))
    names = [f.name for f in fds.file]
    assert names == ["google/protobuf/timestamp.proto", "protos/task.proto"]
    types = MessageTypes.from_descriptor_set(descriptor_set(Task), "platform.Task", "platform.Task")
    task = types.request()
    task.created_at.GetCurrentTime()  # the well-known type's helpers still work


def test_fingerprint_tells_types_apart_and_is_stable():
    a = fingerprint(EchoRequest, EchoResponse)
    assert a == fingerprint(EchoRequest, EchoResponse)
    assert a != fingerprint(EchoResponse, EchoRequest)
    assert a != fingerprint(ExampleModelRequest, ExampleModelResponse)
