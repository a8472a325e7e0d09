"""OpenAI API pieces without services: a model's declared mapping, batch input files, the
base64 encoding of embeddings and the error shape."""

from __future__ import annotations

import base64
import json
import struct

import pytest

from app.openai.batch_input import InvalidBatchInput, parse_batch_input
from app.openai.embeddings import encoded
from app.openai.errors import openai_error_body
from app.openai.served import count_tokens
from deployments.sdk import OpenAIMapping, model
from protos.echo_pb2 import EchoRequest, EchoResponse
from protos.embedder_pb2 import EmbedRequest, EmbedResponse


def _line(custom_id="a", text="hello", url="/v1/embeddings", **body):
    return json.dumps(
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": url,
            "body": {"model": "m", "input": text, **body},
        }
    )


def _parse(*lines, max_lines=100):
    return parse_batch_input(
        "\n".join(lines).encode(), endpoint="/v1/embeddings", max_lines=max_lines
    )


def test_a_batch_file_gives_its_lines_in_order():
    parsed = _parse(_line("a", "one"), "", _line("b", ["two"], encoding_format="base64"))
    assert parsed.model == "m"
    assert [(x.custom_id, x.text, x.encoding_format) for x in parsed.lines] == [
        ("a", "one", "float"),
        ("b", "two", "base64"),
    ]


@pytest.mark.parametrize(
    ("lines", "code", "line"),
    [
        (["not json"], "invalid_json_line", 1),
        (["[1, 2]"], "invalid_json_line", 1),
        ([_line("a"), _line("a")], "duplicate_custom_id", 2),
        ([_line(url="/v1/completions")], "mismatched_endpoint", 1),
        ([_line(text=["a", "b"])], "invalid_body", 1),
        ([_line(text="  ")], "invalid_body", 1),
        ([_line(encoding_format="int8")], "invalid_body", 1),
        (
            [json.dumps({"method": "POST", "url": "/v1/embeddings", "body": {}})],
            "missing_required_parameter",
            1,
        ),
    ],
)
def test_a_bad_line_is_named_with_its_number_and_reason(lines, code, line):
    with pytest.raises(InvalidBatchInput) as refused:
        _parse(*lines)
    assert (refused.value.errors[0].code, refused.value.errors[0].line) == (code, line)


def test_a_batch_file_names_one_model_and_has_a_bounded_size():
    other = json.loads(_line("b"))
    other["body"]["model"] = "other"
    with pytest.raises(InvalidBatchInput) as mixed:
        _parse(_line("a"), json.dumps(other))
    assert mixed.value.errors[0].code == "mixed_models"
    with pytest.raises(InvalidBatchInput) as long:
        _parse(_line("a"), _line("b"), max_lines=1)
    assert long.value.errors[0].code == "too_many_lines"
    with pytest.raises(InvalidBatchInput) as empty:
        _parse("", " ")
    assert empty.value.errors[0].code == "empty_file"


def test_base64_embeddings_are_little_endian_float32():
    vector = [0.5, -1.25, 3.0]
    text = encoded(vector, "base64")
    assert struct.unpack("<3f", base64.b64decode(text)) == tuple(vector)
    assert encoded(vector, "float") == vector
    assert count_tokens(["two words", " three  more words "]) == 5


def test_a_model_declares_the_openai_endpoint_its_messages_fit():
    @model(name="oai-ok", request=EmbedRequest, response=EmbedResponse, openai="embeddings")
    class Fits:
        async def process_request(self, request: EmbedRequest) -> EmbedResponse:
            return EmbedResponse()

    assert Fits.__model_spec__.openai == OpenAIMapping("embeddings", "text", "vector")
    with pytest.raises(TypeError, match="repeated float field 'vector'"):
        model(name="oai-bad", request=EchoRequest, response=EchoResponse, openai="embeddings")
    with pytest.raises(TypeError, match="string field 'sentence'"):
        model(
            name="oai-bad2",
            request=EmbedRequest,
            response=EmbedResponse,
            openai=OpenAIMapping("embeddings", input="sentence"),
        )
    with pytest.raises(TypeError, match="not an OpenAI endpoint"):
        model(name="oai-bad3", request=EmbedRequest, response=EmbedResponse, openai="images")


def test_errors_take_openais_shape_and_type_by_status():
    body = openai_error_body(404, "model_not_found", "no model", "model")
    assert body == {
        "error": {
            "message": "no model",
            "type": "not_found_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert openai_error_body(429, "too_many_requests", "x")["error"]["type"] == "rate_limit_error"
    assert openai_error_body(503, "unavailable", "x")["error"]["type"] == "server_error"
    validation = openai_error_body(422, "invalid_input", [{"loc": ["body", "input"], "msg": "bad"}])
    assert validation["error"]["message"] == "input: bad"
