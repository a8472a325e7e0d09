"""Submitting tasks to a model and fetching their results."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import JSONResponse

from app.api.body import decode_request, media_type, read_capped
from app.api.deps import CurrentUser, ServicesDep
from app.api.schemas import TaskAccepted, TaskDocument, error_responses
from app.core.broker import BrokerError, QueueMissing
from app.core.errors import Forbidden, ModelUnavailable, TaskNotFound, Unavailable
from app.core.store import StoreError
from app.core.tasks import TaskRecord, new_envelope
from protos.codec import PROTOBUF_CONTENT_TYPE

logger = logging.getLogger(__name__)

router = APIRouter(tags=["tasks"])

ModelName = Annotated[str, Path(description="Name of a live model (see GET /models).")]
# Bound of a long-poll; a client wanting longer simply asks again.
MAX_WAIT_S = 30.0
POLL_INTERVAL_S = 0.05


@router.post(
    "/models/{name}/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskAccepted,
    responses=error_responses(400, 401, 404, 413, 415, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "The model's request message (see the model's own operation).",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                PROTOBUF_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def submit_task(
    name: ModelName, request: Request, user: CurrentUser, services: ServicesDep
) -> TaskAccepted:
    """Queue a task for a model; the body is its request message as JSON or protobuf."""
    model = await services.catalog.get(name)
    body = await read_capped(request, services.settings.max_body_bytes)
    message = decode_request(body, media_type(request), model.types.request)
    envelope = new_envelope(model=name, owner=user, payload=message.SerializeToString())
    created_at = envelope.created_at.ToNanoseconds() / 1e9
    timeout = services.settings.io_timeout_s
    # "pending" is written before the publish, so a fast replica always finds the record;
    # if the publish then fails, the record is removed and nothing half-made remains.
    try:
        await asyncio.wait_for(
            services.store.create_pending(
                envelope.task_id, model=name, owner=user, created_at=created_at
            ),
            timeout,
        )
    except (StoreError, TimeoutError) as exc:
        logger.warning("result store unavailable: %s", exc)
        raise Unavailable("the result store is unavailable") from exc
    try:
        await services.publisher.publish(
            name, envelope.SerializeToString(), message_id=envelope.task_id
        )
    except (BrokerError, TimeoutError) as exc:
        await _forget(services, envelope.task_id)
        if isinstance(exc, QueueMissing):
            raise ModelUnavailable(f"model {name!r} has no queue yet") from exc
        logger.warning("broker unavailable: %s", exc)
        raise Unavailable("the message broker is unavailable") from exc
    return TaskAccepted(task_id=envelope.task_id)


async def _forget(services: ServicesDep, task_id: str) -> None:
    try:
        await services.store.delete(task_id)
    except StoreError:
        logger.warning("task %s: could not remove the pending record of a failed submit", task_id)


@router.get(
    "/models/{name}/result",
    response_model=TaskDocument,
    responses={
        200: {
            "description": "The task is done (succeeded or failed).",
            "content": {PROTOBUF_CONTENT_TYPE: {}},
        },
        202: {"model": TaskDocument, "description": "Not done yet."},
        **error_responses(401, 403, 404, 422, 503),
    },
)
async def get_result(
    name: ModelName,
    request: Request,
    user: CurrentUser,
    services: ServicesDep,
    task_id: Annotated[str, Query(min_length=1, max_length=64)],
    wait: Annotated[
        float,
        Query(ge=0, le=MAX_WAIT_S, description="Seconds to wait for the task to finish."),
    ] = 0,
) -> Response:
    """A task's status and, once done, its result (protobuf with Accept: application/x-protobuf)."""
    record = await _load(services, task_id, name, user)
    deadline = time.monotonic() + wait
    while not record.status.is_final and time.monotonic() < deadline:
        await asyncio.sleep(POLL_INTERVAL_S)
        record = await _load(services, task_id, name, user)

    if (
        record.status.is_final
        and record.result is not None
        and PROTOBUF_CONTENT_TYPE in request.headers.get("accept", "")
    ):
        return Response(content=record.result, media_type=PROTOBUF_CONTENT_TYPE)
    result = json.loads(record.result_json) if record.result_json else None
    return JSONResponse(
        record.to_document(result),
        status_code=status.HTTP_200_OK if record.status.is_final else status.HTTP_202_ACCEPTED,
    )


async def _load(services: ServicesDep, task_id: str, model: str, user: str) -> TaskRecord:
    try:
        record = await services.store.get(task_id)
    except StoreError as exc:
        raise Unavailable("the result store is unavailable") from exc
    if record is None or record.model != model:
        hours = services.settings.result_ttl_s / 3600
        raise TaskNotFound(
            f"no task {task_id!r} for model {model!r}: unknown, or its result expired "
            f"(results are kept {hours:g} h)"
        )
    if record.owner != user:
        raise Forbidden("this task belongs to another user")
    return record
