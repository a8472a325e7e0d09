"""Open Inference Protocol mapping: flat messages to tensors and back, JSON and binary."""

from __future__ import annotations

import json
import struct

import pytest

from app.oip.codec import (
    TensorError,
    flat_problem,
    request_message,
    response_body,
    split_body,
    tensor_metadata,
)
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.example_pb2 import ExampleModelRequest
from protos.iris_pb2 import IrisRequest, IrisResponse


def test_flat_messages_and_why_others_are_not():
    assert flat_problem(IrisRequest.DESCRIPTOR) is None
    problem = flat_problem(ExampleModelRequest.DESCRIPTOR)
    assert problem is not None and "field(s) file" in problem


def test_metadata_names_datatypes_and_shapes():
    assert tensor_metadata(IrisRequest.DESCRIPTOR) == [
        {"name": n, "datatype": "FP32", "shape": [1]}
        for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")
    ]
    assert tensor_metadata(EchoRequest.DESCRIPTOR)[1] == {
        "name": "delay_ms",
        "datatype": "UINT32",
        "shape": [1],
    }
    outputs = tensor_metadata(IrisResponse.DESCRIPTOR)
    assert outputs[1] == {"name": "probabilities", "datatype": "BYTES", "shape": [1]}


def iris_inputs(**values):
    return {
        "inputs": [
            {"name": name, "shape": [1], "datatype": "FP32", "data": [value]}
            for name, value in values.items()
        ]
    }


def test_json_request_to_message():
    message, outputs = request_message(
        iris_inputs(sepal_length=5.0, petal_width=0.2), b"", IrisRequest
    )
    assert message.sepal_length == 5.0 and message.petal_width == pytest.approx(0.2)
    assert outputs == []


def test_binary_request_to_message():
    document = {
        "inputs": [
            {
                "name": "text",
                "shape": [1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": 9},
            },
            {
                "name": "delay_ms",
                "shape": [1],
                "datatype": "UINT32",
                "parameters": {"binary_data_size": 4},
            },
        ]
    }
    binary = struct.pack("<I", 5) + b"hello" + struct.pack("<I", 7)
    header = json.dumps(document).encode()
    parsed, rest = split_body(header + binary, str(len(header)))
    message, _ = request_message(parsed, rest, EchoRequest)
    assert message.text == "hello" and message.delay_ms == 7


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ({}, "`inputs` list"),
        ({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]}, "no input"),
        (
            {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "INT32", "data": [1]}]},
            "is FP32",
        ),
        (
            {"inputs": [{"name": "sepal_length", "shape": [2], "datatype": "FP32", "data": [1]}]},
            "holds 2",
        ),
        (
            {
                "inputs": [
                    {"name": "sepal_length", "shape": [2], "datatype": "FP32", "data": [1, 2]}
                ]
            },
            "single value",
        ),
        (
            {"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP32", "data": ["x"]}]},
            "numbers",
        ),
        ({"inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP32"}]}, "no `data`"),
        ({"inputs": []}, "`inputs` is empty"),
        (
            {
                "inputs": [{"name": "sepal_length", "shape": [1], "datatype": "FP32", "data": [1]}],
                "outputs": {},
            },
            "`outputs` is a list",
        ),
    ],
)
def test_bad_requests_say_why(document, why):
    with pytest.raises(TensorError, match=why):
        request_message(document, b"", IrisRequest)


def test_response_json_with_a_non_flat_field_as_json_text():
    response = IrisResponse(species="setosa", probabilities={"setosa": 1.0})
    body, header_length = response_body(
        response, model="iris", version="0", request_id="r1", requested=[]
    )
    assert header_length is None
    document = json.loads(body)
    assert document["model_name"] == "iris" and document["id"] == "r1"
    species, probabilities = document["outputs"]
    assert species == {"name": "species", "datatype": "BYTES", "shape": [1], "data": ["setosa"]}
    assert json.loads(probabilities["data"][0]) == {"setosa": 1.0}


def test_response_binary_when_asked():
    response = EchoResponse(text="hi", replica="r")
    body, header_length = response_body(
        response,
        model="echo",
        version="0",
        request_id=None,
        requested=[{"name": "text", "parameters": {"binary_data": True}}],
    )
    header = json.loads(body[:header_length])
    assert header["outputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}}
    ]
    assert body[header_length:] == struct.pack("<I", 2) + b"hi"
    with pytest.raises(TensorError, match="no output"):
        response_body(response, model="e", version="0", request_id=None, requested=[{"name": "x"}])
