"""Getting results: one task's (long-poll), its changes as server-sent events, and task lists."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
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
from app.push.watch import Chunk, Watch
from app.sharing.leases import OPEN_STREAMS
from app.tasks.store import ResultStore
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


@dataclass
class StreamPosition:
    """What a task's event stream has sent: the record's sequence number and the chunks.

    An event's id says both, `<seq>` or, once chunks were sent, `<seq>.<chunks>`; a client
    that reconnects with it as `Last-Event-ID` gets what came after, nothing twice."""

    seq: int = 0
    chunks: int = 0

    @classmethod
    def parse(cls, last_event_id: str | None) -> StreamPosition:
        match = EVENT_ID.fullmatch(last_event_id or "")
        if match is None:
            return cls()  # not one of ours: start over
        return cls(int(match[1]), int(match[2] or 0))

    @property
    def event_id(self) -> str:
        return f"{self.seq}.{self.chunks}" if self.chunks else str(self.seq)

    def state(self, record: TaskRecord, previous: TaskRecord | None) -> str:
        self.seq = record.seq
        status = record.status
        kind = (
            "progress"
            if previous is not None and status is TaskStatus.RUNNING and previous.status is status
            else status.value
        )
        return f"id: {self.event_id}\nevent: {kind}\ndata: {record.document_json.decode()}\n\n"

    def chunk(self, text: str) -> str:
        self.chunks += 1
        return f"id: {self.event_id}\nevent: chunk\ndata: {text}\n\n"


EVENT_ID = re.compile(r"([0-9]{1,18})(?:\.([0-9]{1,18}))?")


@router.get(
    "/models/{name}/tasks/{task_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Server-sent events, one per state change (event: pending, "
            "running, progress, succeeded, failed, cancelled or expired; data: the task "
            "document) and, from a streaming model, one per output chunk as it is produced "
            "(event: chunk; data: the response message's JSON), ending after the final "
            "state. The id (`<seq>` or `<seq>.<chunks>`) resumes the stream after it as "
            "`Last-Event-ID`; a stream opened after the task ended replays its chunks. "
            "Comments keep an idle stream alive.",
            "content": {
                EVENT_STREAM: {
                    # Each event, as a client library hands it over.
                    "schema": {
                        "type": "object",
                        "required": ["id", "event", "data"],
                        "properties": {
                            "id": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"},
                            "event": {
                                "type": "string",
                                "enum": [*(s.value for s in TaskStatus), "progress", "chunk"],
                            },
                            "data": {
                                "type": "string",
                                "contentMediaType": "application/json",
                                "description": "The task document; for a chunk, the "
                                "model's response message.",
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
            description="Resume after this event id (what is not an event id starts over).",
        ),
    ] = None,
) -> StreamingResponse:
    """Follow a task's state changes as server-sent events until it is done."""
    record = await load_owned(services, task_id, name, user)
    lease = await take_stream_lease(services, user)
    streams = record.chunks > 0 or await services.catalog.streams(name)
    watching = services.notifications.watch(task_id, chunks=streams)
    # Subscribed before the answer starts, so a dead Redis is a 503, not a broken stream.
    try:
        watch = await watching.__aenter__()
    except BaseException:
        await services.leases.give_back(OPEN_STREAMS, user, lease)
        raise
    services.metrics.inc(EVENT_STREAMS, amount=1)
    position = StreamPosition.parse(last_event_id)
    chunks = _ChunkReader(services.store, task_id) if streams else None

    async def stream() -> AsyncIterator[str]:
        try:
            async for event in _changes(watch, position, services.settings.sse_keepalive_s, chunks):
                yield event
        finally:
            services.metrics.inc(EVENT_STREAMS, amount=-1)
            await watching.__aexit__(None, None, None)
            await services.leases.give_back(OPEN_STREAMS, user, lease)

    return StreamingResponse(
        stream(),
        media_type=EVENT_STREAM,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@dataclass(frozen=True)
class _ChunkReader:
    """Reads a task's stored chunks: the ones a resumed stream missed, or a gap's."""

    store: ResultStore
    task_id: str

    async def after(self, sent: int) -> list[str]:
        return await self.store.chunks(self.task_id, sent)


async def _changes(
    watch: Watch, sent: StreamPosition, keepalive_s: float, chunks: _ChunkReader | None
) -> AsyncIterator[str]:
    """The events after `sent`: the current state, the chunks stored so far, then every
    change and chunk as it is notified, until the final state (which comes after the last
    chunk)."""
    record = watch.record
    if not record.status.is_final and record.seq > sent.seq:
        yield sent.state(record, None)
    if chunks is not None:
        for text in await chunks.after(sent.chunks):
            yield sent.chunk(text)
    if record.status.is_final:
        if record.seq > sent.seq:
            yield sent.state(record, None)
        return
    while True:
        change = await watch.next_change(keepalive_s)
        if change is None:
            yield ": keep-alive\n\n"
        elif isinstance(change, Chunk):
            if change.number <= sent.chunks:
                continue  # read with the stored ones already
            if chunks is not None and change.number > sent.chunks + 1:
                for text in await chunks.after(sent.chunks):  # notifications were lost
                    yield sent.chunk(text)
            else:
                yield sent.chunk(change.json)
        elif change.seq > sent.seq:
            if change.status.is_final and chunks is not None and change.chunks > sent.chunks:
                for text in await chunks.after(sent.chunks):
                    yield sent.chunk(text)
            yield sent.state(change, record)
            record = change
            if record.status.is_final:
                return


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
