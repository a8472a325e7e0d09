"""The Open Inference Protocol v2 (REST), for models whose request message is flat.

Clients built for KServe and Triton (e.g. `tritonclient.http`) call the platform's models
with it; calls take the same path as `/models/{name}/infer` (a Serve handle to the model's
own replicas). Errors answer the protocol's `{"error": "..."}`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse

from app.api.deps import CurrentUser, ServicesDep
from app.api.routes.health import readiness
from app.api.routing import bounded_route
from app.core.errors import BadRequest, ModelUnavailable
from app.inference.outcome import Outcome, outcome_error
from app.oip.codec import (
    HEADER_LENGTH,
    TensorError,
    flat_model,
    request_message,
    response_body,
    split_body,
    tensor_metadata,
)
from protos.codec import message_from_bytes

router = APIRouter(
    prefix="/v2",
    tags=["open inference protocol"],
    route_class=bounded_route(setting="max_body_bytes"),
)

OipModel = Annotated[str, Path(description="Name of a live model with a flat request message.")]
ModelName = Annotated[str, Path(description="Name of a live model.")]
PLATFORM = "model-serving-platform"


def _oip_error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}},
                }
            }
        },
    }


ERRORS = {
    400: _oip_error("Not a flat model, or a request that does not fit its tensors."),
    401: _oip_error("Missing or invalid bearer token."),
    404: _oip_error("No such live model."),
    422: _oip_error("The model refused the request (InvalidInput)."),
    429: _oip_error("A limit of yours was reached (see Retry-After)."),
    502: _oip_error("The model failed."),
    503: _oip_error("The model or a dependency is unavailable."),
    504: _oip_error("The model did not answer in time."),
}


@router.get("/health/live", responses={200: {"description": "The server is live."}})
async def server_live() -> dict[str, bool]:
    """The server is up."""
    return {"live": True}


@router.get(
    "/health/ready",
    responses={200: {"description": "Ready."}, 503: _oip_error("Not ready.")},
)
async def server_ready(services: ServicesDep) -> Response:
    """Redis, RabbitMQ and the registry are reachable."""
    checks = await readiness(services)
    ready = all(value == "ok" for value in checks.values())
    if ready:
        return JSONResponse({"ready": True})
    down = ", ".join(name for name, value in checks.items() if value != "ok")
    return JSONResponse({"ready": False, "error": f"unavailable: {down}"}, status_code=503)


@router.get("", responses={401: ERRORS[401]})
async def server_metadata(user: CurrentUser) -> dict[str, Any]:
    """The server's name, version and protocol extensions."""
    from importlib.metadata import version

    return {
        "name": PLATFORM,
        "version": version("model-serving-platform"),
        "extensions": ["binary_tensor_data"],
    }


@router.get("/models/{name}", responses={k: ERRORS[k] for k in (400, 401, 404, 503)})
async def model_metadata(
    name: OipModel, user: CurrentUser, services: ServicesDep
) -> dict[str, Any]:
    """The model's version and its inputs and outputs (name, datatype, shape)."""
    model = await flat_model(services.catalog, name)
    return {
        "name": name,
        "versions": [model.view.version],
        "platform": PLATFORM,
        "inputs": tensor_metadata(model.types.request.DESCRIPTOR),
        "outputs": tensor_metadata(model.types.response.DESCRIPTOR),
    }


@router.get(
    "/models/{name}/ready",
    responses={200: {"description": "Ready."}, **{k: ERRORS[k] for k in (401, 404, 503)}},
)
async def model_ready(name: ModelName, user: CurrentUser, services: ServicesDep) -> dict[str, Any]:
    """200 when the model has a live replica, 503 when it has none, 404 when there is no such
    model. Any model: readiness says nothing about whether its messages map to tensors."""
    model = await services.catalog.get(name)
    if model.view.instances == 0:  # scaled to zero: tasks wake it, a call would wait
        raise ModelUnavailable(f"model {name!r} has no replica running")
    return {"name": name, "ready": True}


@router.post(
    "/models/{name}/infer",
    responses={
        200: {
            "description": "The outputs (JSON, or a JSON header and binary tensor data).",
            "content": {"application/octet-stream": {}},
        },
        **{k: ERRORS[k] for k in (400, 401, 404, 422, 429, 502, 503, 504)},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["inputs"],
                        "properties": {
                            "id": {"type": "string"},
                            "inputs": {"type": "array", "items": {"type": "object"}},
                            "outputs": {"type": "array", "items": {"type": "object"}},
                        },
                    }
                },
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def model_infer(
    name: OipModel, request: Request, user: CurrentUser, services: ServicesDep
) -> Response:
    """Run the model on named input tensors; answer with its output tensors."""
    model = await flat_model(services.catalog, name)
    await services.ensure_enabled(name)
    body = await request.body()
    try:
        document, binary = split_body(body, request.headers.get(HEADER_LENGTH))
        message, requested = request_message(document, binary, model.types.request)
    except TensorError as exc:
        raise BadRequest(str(exc)) from exc
    request_id = document.get("id") if isinstance(document.get("id"), str) else None
    binary_default = bool((document.get("parameters") or {}).get("binary_data_output", False))
    await services.take_call(user, name)
    outcome = await services.caller.infer(model.view, message.SerializeToString(deterministic=True))
    if outcome.outcome is not Outcome.OK:
        raise outcome_error(outcome)
    response = message_from_bytes(outcome.response, model.types.response)
    try:
        content, header_length = response_body(
            response,
            model=name,
            version=model.view.version,
            request_id=request_id,
            requested=requested,
            binary_by_default=binary_default,
        )
    except TensorError as exc:
        raise BadRequest(str(exc)) from exc
    if header_length is None:
        return Response(content=content, media_type="application/json")
    return Response(
        content=content,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(header_length)},
    )


def oip_error_body(detail: Any) -> dict[str, str]:
    """The protocol's error shape: one message."""
    return {"error": detail if isinstance(detail, str) else json.dumps(detail)}
