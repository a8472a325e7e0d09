from __future__ import annotations

import base64

import pytest

from protos.codec import (
    DecodeFailed,
    JsonMismatch,
    message_from_bytes,
    message_from_json,
    message_to_dict,
)
from protos.example_pb2 import ExampleModelRequest, File
from protos.iris_pb2 import IrisResponse
from protos.validation import MessageValidator


def test_json_roundtrip_with_bytes_as_base64():
    message = ExampleModelRequest(file=File(content=b"\x00\xffhello"), author="ada")
    as_dict = message_to_dict(message)
    assert as_dict["file"]["content"] == base64.b64encode(b"\x00\xffhello").decode()
    import json

    assert message_from_json(json.dumps(as_dict), ExampleModelRequest) == message


def test_camel_case_names_are_accepted():
    from protos.echo_pb2 import EchoRequest

    assert message_from_json('{"delayMs": 5}', EchoRequest).delay_ms == 5


def test_defaults_are_written_out():
    assert message_to_dict(IrisResponse()) == {"species": "", "probabilities": {}}


@pytest.mark.parametrize(
    ("body", "error", "mentions"),
    [
        ("{", DecodeFailed, "not valid JSON"),
        (b"\xff\xfe", DecodeFailed, "not valid JSON"),
        ("[]", JsonMismatch, "expected a JSON object"),
        ('{"author": 3}', JsonMismatch, "author"),
        ('{"nope": 1}', JsonMismatch, "nope"),
        ('{"file": {"content": "***"}}', JsonMismatch, "content"),
    ],
)
def test_bad_json__explains(body, error, mentions):
    with pytest.raises(error, match=mentions):
        message_from_json(
            body, ExampleModelRequest, MessageValidator(ExampleModelRequest.DESCRIPTOR)
        )


def test_bad_protobuf__decode_failed():
    with pytest.raises(DecodeFailed, match="example.ExampleModelRequest"):
        message_from_bytes(b"\xff\xff\xff\xff", ExampleModelRequest)


def test_float_vectors_convert_as_json_format_does_and_read_back_exactly():
    import json
    import random
    import struct

    from google.protobuf import json_format

    from protos.codec import message_from_json, message_to_dict
    from protos.embedder_pb2 import EmbedResponse

    rng = random.Random(7)
    values = [rng.gauss(0, 0.05) for _ in range(500)] + [0.1, -0.0, 3.4e38, 1.17549435e-38]
    values += [struct.unpack("f", struct.pack("I", rng.getrandbits(30)))[0] for _ in range(500)]
    message = EmbedResponse(vector=values, dimension=len(values))
    ours = message_to_dict(message)
    reference = json_format.MessageToDict(
        message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True
    )
    assert list(ours) == list(reference)  # same keys, same order
    assert ours["dimension"] == reference["dimension"]
    differ = [(a, b) for a, b in zip(ours["vector"], reference["vector"], strict=True) if a != b]
    # Only subnormals may be written differently (ours is shorter); both read back the same.
    assert all(abs(a) < 1.2e-38 for a, _ in differ)
    assert message_from_json(json.dumps(ours), EmbedResponse) == message
    special = message_to_dict(EmbedResponse(vector=[float("nan"), float("inf"), -float("inf")]))
    assert special["vector"] == ["NaN", "Infinity", "-Infinity"]
    assert message_to_dict(EmbedResponse()) == {"vector": [], "dimension": 0}
