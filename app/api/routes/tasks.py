"""Submitting tasks to a model (one, or a batch) and cancelling them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status

from app.api.body import decode_batch, enabled_model_request, media_type
from app.api.deps import CurrentUser, ServicesDep, SubmitOptionsDep
from app.api.owned import load_owned
from app.api.routing import bounded_route
from app.api.schemas import BatchAccepted, TaskAccepted, error_responses
from app.core.errors import TaskFinished
from app.core.lifecycle import TaskDocument
from app.core.metrics import CANCEL_REQUESTS
from protos.codec import PROTOBUF_CONTENT_TYPE

router = APIRouter(tags=["tasks"], route_class=bounded_route(setting="max_body_bytes"))
# Batches have a larger body cap of their own (APP_MAX_BATCH_BYTES).
batch_router = APIRouter(tags=["tasks"], route_class=bounded_route(setting="max_batch_bytes"))

ModelName = Annotated[str, Path(description="Name of a live model (see GET /models).")]
TaskId = Annotated[str, Path(min_length=1, max_length=64, description="A task id.")]


def _body(description: str, json_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {"schema": json_schema},
                PROTOBUF_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    }


@router.post(
    "/models/{name}/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
    openapi_extra=_body(
        "The model's request message (see the model's own operation).", {"type": "object"}
    ),
)
async def submit_task(
    name: ModelName,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    options: SubmitOptionsDep,
) -> Response:
    """Queue a task for a model; the body is its request message as JSON or protobuf."""
    model, message = await enabled_model_request(services, name, request)
    accepted = await services.submitter.submit(
        model=model.view,
        owner=user,
        payloads=[message.SerializeToString(deterministic=True)],
        options=options,
    )
    [task_id] = accepted.task_ids
    # Written directly: validating and serializing TaskAccepted per request is needless work.
    return Response(
        content=b'{"task_id":"' + task_id.encode() + b'","status":"pending"}',
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers=accepted.rate_headers(),
    )


@batch_router.post(
    "/models/{name}/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=error_responses(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
    openapi_extra=_body(
        "A JSON array of the model's request messages, or a `platform.Batch` protobuf "
        "(`repeated bytes requests`, each a serialized request message).",
        {"type": "array", "items": {"type": "object"}, "minItems": 1},
    ),
)
async def submit_batch(
    name: ModelName,
    request: Request,
    response: Response,
    user: CurrentUser,
    services: ServicesDep,
    options: SubmitOptionsDep,
) -> BatchAccepted:
    """Queue one task per request message, all or nothing; the task ids come back in order."""
    model = await services.catalog.get(name)
    await services.ensure_enabled(name)
    body = await request.body()
    messages = decode_batch(
        body,
        media_type(request),
        model.types.request,
        model.types.request_validator,
        max_items=services.settings.max_batch_tasks,
    )
    accepted = await services.submitter.submit(
        model=model.view,
        owner=user,
        payloads=[m.SerializeToString(deterministic=True) for m in messages],
        options=options,
        kind="batch",
    )
    response.headers.update(accepted.rate_headers())
    return BatchAccepted(task_ids=accepted.task_ids)


@router.delete(
    "/models/{name}/tasks/{task_id}",
    response_model=TaskDocument,
    responses={
        202: {
            "model": TaskDocument,
            "description": "The task is running: its replica was asked to stop it; it ends "
            "`cancelled`.",
        },
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
async def cancel_task(
    name: ModelName, task_id: TaskId, user: CurrentUser, services: ServicesDep
) -> Response:
    """Cancel a task: a pending one at once (200), a running one in its replica (202)."""
    record = await load_owned(services, task_id, name, user)
    if record.status.is_final:
        raise TaskFinished(f"task {task_id!r} is already {record.status.value}")
    services.metrics.inc(CANCEL_REQUESTS, name)
    outcome = await services.store.request_cancel(task_id, name)
    transition = outcome.transition
    if transition.written:
        await services.finished(task_id, name, transition)
    elif not outcome.requested:
        raise TaskFinished(f"task {task_id!r} is already {transition.status}")
    # 200: cancelled here and now; 202: its replica was asked (and may have done it already).
    code = status.HTTP_202_ACCEPTED if outcome.requested else status.HTTP_200_OK
    record = await load_owned(services, task_id, name, user)
    return Response(record.document_json, status_code=code, media_type="application/json")
