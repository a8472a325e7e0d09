"""Calling a model synchronously: the answer in the same HTTP call, no task."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response

from app.api.body import enabled_model_request
from app.api.deps import CurrentUser, ServicesDep, take_stream_lease
from app.api.routes.tasks import ModelName, _body
from app.api.routing import bounded_route
from app.api.schemas import error_responses
from app.catalog.catalog import LiveModel
from app.inference.outcome import InferOutcome, Outcome, outcome_error
from app.sharing.leases import OPEN_STREAMS
from app.streaming.calls import EVENT_STREAM, CallEvents, stream_call
from protos.codec import (
    PROTOBUF_CONTENT_TYPE,
    message_from_bytes,
    message_to_dict,
    message_to_json,
)

router = APIRouter(tags=["tasks"], route_class=bounded_route(setting="max_body_bytes"))


def answer(model: LiveModel, outcome: InferOutcome, request: Request) -> Response:
    """The response message (JSON, or protobuf by Accept), or the outcome's error."""
    if outcome.outcome is Outcome.OK:
        if PROTOBUF_CONTENT_TYPE in request.headers.get("accept", ""):
            return Response(content=outcome.response, media_type=PROTOBUF_CONTENT_TYPE)
        message = message_from_bytes(outcome.response, model.types.response)
        return Response(
            content=json.dumps(message_to_dict(message), separators=(",", ":")),
            media_type="application/json",
        )
    raise outcome_error(outcome)


@router.post(
    "/models/{name}/infer",
    responses={
        200: {
            "description": "The model's response message; with `Accept: text/event-stream`, "
            "server-sent events as the model produces them: `event: chunk` per response "
            "message (one for a model that does not stream), then `event: done`, or "
            "`event: error` if the model fails after its first chunk.",
            "content": {PROTOBUF_CONTENT_TYPE: {}, EVENT_STREAM: {"schema": {"type": "string"}}},
        },
        **error_responses(400, 401, 404, 413, 415, 422, 429, 502, 503, 504),
    },
    openapi_extra=_body(
        "The model's request message (see the model's own operation).", {"type": "object"}
    ),
)
async def infer(
    name: ModelName, request: Request, user: CurrentUser, services: ServicesDep
) -> Response:
    """Run the model on one request and answer with its response message (no task)."""
    model, message = await enabled_model_request(services, name, request)
    rate_headers = await services.take_call(user, name)
    payload = message.SerializeToString(deterministic=True)
    if EVENT_STREAM in request.headers.get("accept", ""):
        lease = await take_stream_lease(services, user)

        async def give_back() -> None:
            await services.leases.give_back(OPEN_STREAMS, user, lease)

        streamed = await stream_call(
            services.caller.stream(model.view, payload), _InferEvents(model), on_end=give_back
        )
        streamed.headers.update(rate_headers)
        return streamed
    outcome = await services.caller.infer(model.view, payload)
    response = answer(model, outcome, request)
    response.headers.update(rate_headers)
    return response


class _InferEvents(CallEvents):
    """`/infer`'s events: each chunk as the response message's JSON."""

    def __init__(self, model: LiveModel) -> None:
        self._response = model.types.response

    def chunk(self, response: bytes) -> str:
        text = message_to_json(message_from_bytes(response, self._response))
        return f"event: chunk\ndata: {text}\n\n"

    def done(self) -> str:
        return "event: done\ndata: {}\n\n"
