"""`InferenceService`: the protocol's six calls on the gateway's `Services`.

Each call is authenticated with the bearer token in the `authorization` metadata (as REST's
header), and takes the REST route's path: the catalog, the model's switch, the caller's submit
bucket, a Serve handle to the model's replicas. Tensors map onto a flat request message as
in `app.oip.codec` (values in `contents`, or raw little-endian bytes in `raw_input_contents`);
outputs always come back raw, as Triton sends them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, TypeVar

import grpc

from app.api.deps import login_of
from app.api.routes.health import readiness
from app.core.errors import AppError, BadRequest, ModelUnavailable
from app.inference.outcome import Outcome, outcome_error
from app.oip.codec import (
    BINARY_SIZE,
    TensorError,
    flat_model,
    output_tensors,
    request_message,
    tensor_metadata,
)
from app.oip.grpc.messages import pb
from app.oip.grpc.status import message_of, status_of
from app.services import Services
from protos.codec import message_from_bytes

logger = logging.getLogger(__name__)

PLATFORM = "model-serving-platform"
# Where each datatype's values sit in `InferTensorContents`.
CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

_Request = TypeVar("_Request")
_Response = TypeVar("_Response")
Handler = Callable[[Any, _Request, grpc.aio.ServicerContext], Awaitable[_Response]]


def answered(handler: Handler[_Request, _Response]) -> Handler[_Request, _Response]:
    """Turn the platform's errors into the call's status (and `retry-after` when the error
    carries one); anything else is an internal error, logged."""

    @functools.wraps(handler)
    async def call(self: Any, request: _Request, context: grpc.aio.ServicerContext) -> _Response:
        try:
            return await handler(self, request, context)
        except AppError as error:
            retry_after = (error.headers or {}).get("Retry-After")
            trailing = (("retry-after", retry_after),) if retry_after is not None else ()
            await context.abort(status_of(error), message_of(error), trailing)
        except grpc.aio.AbortError:
            raise
        except Exception:
            logger.exception("gRPC %s failed", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable")  # abort raises

    return call


def _token(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            text = value.decode() if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class InferenceService:
    """`inference.GRPCInferenceService` for every live model, added or not since start."""

    def __init__(self, services: Services) -> None:
        self._services = services

    async def _user(self, context: grpc.aio.ServicerContext) -> str:
        return await login_of(self._services, _token(context))

    async def ServerLive(  # noqa: N802 - the protocol's names
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        checks = await readiness(self._services)
        return pb.ServerReadyResponse(ready=all(v == "ok" for v in checks.values()))

    @answered
    async def ServerMetadata(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        await self._user(context)
        return pb.ServerMetadataResponse(
            name=PLATFORM, version=version("model-serving-platform"), extensions=[]
        )

    @answered
    async def ModelReady(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        await self._user(context)
        try:
            model = await self._services.catalog.get(request.name)
        except ModelUnavailable:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=model.view.instances > 0)

    @answered
    async def ModelMetadata(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        await self._user(context)
        model = await flat_model(self._services.catalog, request.name)
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=request.name,
            versions=[model.view.version],
            platform=PLATFORM,
            inputs=[tensors(**t) for t in tensor_metadata(model.types.request.DESCRIPTOR)],
            outputs=[tensors(**t) for t in tensor_metadata(model.types.response.DESCRIPTOR)],
        )

    @answered
    async def ModelInfer(  # noqa: N802
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> Any:
        user = await self._user(context)
        services = self._services
        name = request.model_name
        model = await flat_model(services.catalog, name)
        await services.ensure_enabled(name)
        try:
            document, binary = infer_document(request)
            message, requested = request_message(document, binary, model.types.request)
        except TensorError as exc:
            raise BadRequest(str(exc)) from exc
        await services.take_call(user, name)
        outcome = await services.caller.infer(
            model.view, message.SerializeToString(deterministic=True)
        )
        if outcome.outcome is not Outcome.OK:
            raise outcome_error(outcome)
        response = message_from_bytes(outcome.response, model.types.response)
        try:
            tensors = output_tensors(response, requested)
        except TensorError as exc:
            raise BadRequest(str(exc)) from exc
        answer = pb.ModelInferResponse(
            model_name=name, model_version=model.view.version, id=request.id
        )
        for tensor_name, datatype, count, raw in tensors:
            answer.outputs.add(name=tensor_name, datatype=datatype, shape=[count])
            answer.raw_output_contents.append(raw)
        return answer


def infer_document(request: Any) -> tuple[dict[str, Any], bytes]:
    """A gRPC inference request in the REST form `app.oip.codec.request_message` reads: the inputs
    (with their values, or the size of their raw bytes) and the raw bytes in order.

    Raises:
        TensorError: raw contents that do not match the inputs one to one.
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise TensorError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: give one per input"
        )
    inputs: list[dict[str, Any]] = []
    for index, tensor in enumerate(request.inputs):
        item: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": list(tensor.shape),
        }
        if raw:
            item["parameters"] = {BINARY_SIZE: len(raw[index])}
        else:
            field = CONTENTS.get(tensor.datatype)
            if field is None:
                raise TensorError(f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}")
            item["data"] = list(getattr(tensor.contents, field))
        inputs.append(item)
    outputs = [{"name": output.name} for output in request.outputs]
    return {"inputs": inputs, "outputs": outputs}, b"".join(raw)
