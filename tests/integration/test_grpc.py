"""The Open Inference Protocol over gRPC, served by the in-process gateway on real Redis and
RabbitMQ: the same checks as REST, errors as gRPC status codes that match the REST ones, and a
model added after the server started is served at once."""

from __future__ import annotations

import struct
import uuid

import grpc
import pytest

from app.oip.grpc.messages import METHODS, SERVICE, pb
from app.sharing.limits import LimitOverrides
from deployments.echo import Echo
from deployments.summarizer import Summarizer
from tests.utils.models import Counting
from tests.utils.net import free_port


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"grpc_port": free_port()})


@pytest.fixture
async def stub(gateway_app, settings):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{settings.grpc_port}") as channel:
        yield Stub(channel)


class Stub:
    """The protocol's calls on a channel, with the messages the gateway serves."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        for name, request, response in METHODS:
            setattr(
                self,
                name,
                channel.unary_unary(
                    f"/{SERVICE}/{name}",
                    request_serializer=getattr(pb, request).SerializeToString,
                    response_deserializer=getattr(pb, response).FromString,
                ),
            )


def bearer(headers: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return (("authorization", headers["Authorization"]),)


def text_input(text: str) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(
        name="text",
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[text.encode()]),
    )


def bytes_elements(raw: bytes) -> list[bytes]:
    values, position = [], 0
    while position < len(raw):
        (length,) = struct.unpack_from("<I", raw, position)
        values.append(raw[position + 4 : position + 4 + length])
        position += 4 + length
    return values


async def test_health_metadata_and_an_inference(stub, user, deploy):
    auth = bearer(await user())
    echo = (await deploy(Echo())).consumer.spec.name
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    server = await stub.ServerMetadata(pb.ServerMetadataRequest(), metadata=auth)
    assert server.name == "model-serving-platform"
    assert (await stub.ModelReady(pb.ModelReadyRequest(name=echo), metadata=auth)).ready
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name=echo), metadata=auth)
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
        ("text", "BYTES", [1]),
        ("delay_ms", "UINT32", [1]),
        ("fail_with", "BYTES", [1]),
    ]
    answer = await stub.ModelInfer(
        pb.ModelInferRequest(model_name=echo, id="r1", inputs=[text_input("over gRPC")]),
        metadata=auth,
    )
    assert answer.model_name == echo and answer.id == "r1"
    outputs = {
        o.name: raw for o, raw in zip(answer.outputs, answer.raw_output_contents, strict=True)
    }
    assert bytes_elements(outputs["text"]) == [b"over gRPC"]
    # Raw input bytes (tritonclient's default), and only the output asked for.
    raw = pb.ModelInferRequest(
        model_name=echo,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="text", datatype="BYTES", shape=[1])],
        raw_input_contents=[struct.pack("<I", 3) + b"raw"],
        outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(name="text")],
    )
    only = await stub.ModelInfer(raw, metadata=auth)
    assert [o.name for o in only.outputs] == ["text"]
    assert bytes_elements(only.raw_output_contents[0]) == [b"raw"]


async def test_errors_are_the_status_codes_of_their_rest_answers(stub, user, deploy, services):
    login = f"grpc-{uuid.uuid4().hex[:8]}"
    headers = await user(login)
    auth = bearer(headers)
    echo = (await deploy(Echo())).consumer.spec.name
    summarizer = (await deploy(Summarizer())).consumer.spec.name
    counting = (await deploy(Counting())).consumer.spec.name

    async def code(call, request, metadata=auth) -> grpc.StatusCode:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(request, metadata=metadata)
        return failed.value.code()

    infer = stub.ModelInfer
    hello = pb.ModelInferRequest(model_name=echo, inputs=[text_input("x")])
    assert await code(infer, hello, metadata=()) is grpc.StatusCode.UNAUTHENTICATED
    assert (
        await code(infer, hello, metadata=(("authorization", "Bearer forged"),))
        is grpc.StatusCode.UNAUTHENTICATED
    )
    missing = pb.ModelInferRequest(model_name="no-such-model", inputs=[text_input("x")])
    assert await code(infer, missing) is grpc.StatusCode.NOT_FOUND
    not_flat = pb.ModelMetadataRequest(name=summarizer)
    assert await code(stub.ModelMetadata, not_flat) is grpc.StatusCode.INVALID_ARGUMENT
    wrong = pb.ModelInferRequest(
        model_name=echo,
        inputs=[pb.ModelInferRequest.InferInputTensor(name="text", datatype="FP32", shape=[1])],
    )
    assert await code(infer, wrong) is grpc.StatusCode.INVALID_ARGUMENT
    refused = pb.ModelInferRequest(
        model_name=counting,
        inputs=[text_input("x"), _bytes("fail_with", "refused by the model")],
    )
    assert await code(infer, refused) is grpc.StatusCode.INVALID_ARGUMENT  # InvalidInput: 422
    broken = pb.ModelInferRequest(
        model_name=echo, inputs=[text_input("x"), _bytes("fail_with", "it broke")]
    )
    assert await code(infer, broken) is grpc.StatusCode.INTERNAL  # the model failed: 502
    # A user past their submit rate: RESOURCE_EXHAUSTED with when to try again.
    await services.limits.update(login, LimitOverrides(submits_per_s=0.01, submit_burst=1))
    await stub.ModelInfer(hello, metadata=auth)
    with pytest.raises(grpc.aio.AioRpcError) as limited:
        await stub.ModelInfer(hello, metadata=auth)
    assert limited.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert dict(limited.value.trailing_metadata())["retry-after"]


def _bytes(name: str, value: str) -> pb.ModelInferRequest.InferInputTensor:
    return pb.ModelInferRequest.InferInputTensor(
        name=name,
        datatype="BYTES",
        shape=[1],
        contents=pb.InferTensorContents(bytes_contents=[value.encode()]),
    )


async def test_a_model_deployed_after_the_server_started_is_served(stub, user, deploy):
    auth = bearer(await user())
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live  # the server is up first
    later = (await deploy(Echo())).consumer.spec.name
    answer = await stub.ModelInfer(
        pb.ModelInferRequest(model_name=later, inputs=[text_input("late")]), metadata=auth
    )
    assert bytes_elements(answer.raw_output_contents[0]) == [b"late"]
