"""Getting results: one task's (long-poll), its changes as server-sent events, and task lists."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import CurrentUser, ServicesDep, take_stream_lease
from app.api.owned import load_owned, task_response
from app.api.routes.tasks import ModelName, TaskId
from app.api.routing import BoundedJsonRoute
from app.api.schemas import TaskPage, error_responses
from app.core.lifecycle import TaskDocument, TaskRecord, TaskStatus
from app.core.metrics import EVENT_STREAMS, LONG_POLL_WAITERS
from app.notifications import Watch
from app.quotas.leases import OPEN_STREAMS
from protos.codec import PROTOBUF_CONTENT_TYPE

router = APIRouter(tags=["tasks"], route_class=BoundedJsonRoute)

EVENT_STREAM = "text/event-stream"


@router.get(
    "/models/{name}/result",
    response_model=TaskDocument,
    responses={
        200: {
            "description": "The task is done (succeeded, failed, cancelled or expired).",
            "content": {PROTOBUF_CONTENT_TYPE: {}},
        },
        202: {"model": TaskDocument, "description": "Not done yet."},
        **error_responses(401, 403, 404, 422, 429, 503),
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
        Query(ge=0, le=300, description="Seconds to wait for the task to finish (long-poll)."),
    ] = 0,
) -> Response:
    """A task's status and, once done, its result (protobuf with Accept: application/x-protobuf)."""
    record = await load_owned(services, task_id, name, user)
    wait = min(wait, services.settings.max_wait_s)
    if not record.status.is_final and wait > 0:
        lease = await take_stream_lease(services, user)
        services.metrics.inc(LONG_POLL_WAITERS, amount=1)
        try:
            async with services.notifications.watch(task_id) as watch:
                record = await watch.final(wait)
        finally:
            services.metrics.inc(LONG_POLL_WAITERS, amount=-1)
            await services.leases.give_back(OPEN_STREAMS, user, lease)
    return task_response(record, request)


def _event(record: TaskRecord, previous: TaskRecord | None) -> str:
    status = record.status
    kind = (
        "progress"
        if previous is not None and status is TaskStatus.RUNNING and previous.status is status
        else status.value
    )
    return f"id: {record.seq}\nevent: {kind}\ndata: {record.document_json.decode()}\n\n"


@router.get(
    "/models/{name}/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events, one per state change (event: pending, "
            "running, progress, succeeded, failed, cancelled or expired; data: the task "
            "document; id: the change's sequence number), ending after the final state. "
            "Comments keep an idle stream alive.",
            "content": {
                EVENT_STREAM: {
                    # Each event, as a client library hands it over.
                    "schema": {
                        "type": "object",
                        "required": ["id", "event", "data"],
                        "properties": {
                            "id": {"type": "string", "pattern": "^[0-9]+$"},
                            "event": {
                                "type": "string",
                                "enum": [*(s.value for s in TaskStatus), "progress"],
                            },
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "contentSchema": {"$ref": "#/components/schemas/TaskDocument"},
                            },
                        },
                    }
                }
            },
        },
        **error_responses(401, 403, 404, 422, 429, 503),
    },
)
async def task_events(
    name: ModelName,
    task_id: TaskId,
    user: CurrentUser,
    services: ServicesDep,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=64,
            description="Resume after this event id (what is not a number starts over).",
        ),
    ] = None,
) -> StreamingResponse:
    """Follow a task's state changes as server-sent events until it is done."""
    await load_owned(services, task_id, name, user)
    lease = await take_stream_lease(services, user)
    watching = services.notifications.watch(task_id)
    # Subscribed before the answer starts, so a dead Redis is a 503, not a broken stream.
    try:
        watch = await watching.__aenter__()
    except BaseException:
        await services.leases.give_back(OPEN_STREAMS, user, lease)
        raise
    services.metrics.inc(EVENT_STREAMS, amount=1)
    resume = int(last_event_id) if last_event_id and last_event_id.isdigit() else 0

    async def stream() -> AsyncIterator[str]:
        try:
            async for chunk in _changes(watch, resume, services.settings.sse_keepalive_s):
                yield chunk
        finally:
            services.metrics.inc(EVENT_STREAMS, amount=-1)
            await watching.__aexit__(None, None, None)
            await services.leases.give_back(OPEN_STREAMS, user, lease)

    return StreamingResponse(
        stream(),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _changes(watch: Watch, sent: int, keepalive_s: float) -> AsyncIterator[str]:
    record: TaskRecord | None = None
    current = watch.record
    if current.seq > sent:
        yield _event(current, None)
        sent = current.seq
    record = current
    while not record.status.is_final:
        change = await watch.next_change(keepalive_s)
        if change is None:
            yield ": keep-alive\n\n"
            continue
        if change.seq <= sent:
            continue
        yield _event(change, record)
        sent, record = change.seq, change


# A cursor is a position in the caller's list, "<creation time>:<task id>": any string of that
# form names a position, so none that matches the documented pattern is refused.
CURSOR_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,17})?:[0-9A-Za-z-]{1,64}$"


def _cursor(position: tuple[float, str]) -> str:
    # The exact score (repr round-trips a float): a rounded one would repeat or skip entries.
    return f"{position[0]!r}:{position[1]}"


def _position(cursor: str) -> tuple[float, str]:
    score, task_id = cursor.split(":", 1)
    return float(score), task_id


@router.get("/tasks", response_model=TaskPage, responses=error_responses(401, 422, 503))
async def list_tasks(
    user: CurrentUser,
    services: ServicesDep,
    model: Annotated[str | None, Query(min_length=1, max_length=63)] = None,
    status: Annotated[TaskStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the previous page."),
    ] = None,
) -> TaskPage:
    """Your tasks, newest first, optionally of one model or in one status; paged."""
    position = _position(cursor) if cursor else None
    found: list[TaskRecord] = []
    # Bounded work per page: a status filter may skip many entries; the cursor then points
    # past what was looked at, and the next page goes on from there.
    budget = limit * 10
    while len(found) < limit and budget > 0:
        count = min(budget, 2 * limit)
        entries = await services.store.task_ids(user, model=model, before=position, count=count)
        budget -= count
        records = await services.store.get_many([task_id for task_id, _ in entries])
        gone = []
        for (task_id, score), record in zip(entries, records, strict=True):
            if record is None or record.owner != user:
                gone.append(task_id)
            elif status is None or record.status is status:
                found.append(record)
            position = (score, task_id)
            if len(found) == limit:
                break
        await services.store.forget(user, gone, model)
        if len(entries) < count:
            break
    more = position is not None and bool(
        await services.store.task_ids(user, model=model, before=position, count=1)
    )
    return TaskPage(
        tasks=[record.state() for record in found],
        next_cursor=_cursor(position) if more and position is not None else None,
    )
