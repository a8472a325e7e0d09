"""Reading one task on behalf of its owner, and answering with it (JSON or protobuf)."""

from __future__ import annotations

from fastapi import Request, Response, status

from app.core.errors import Forbidden, TaskNotFound
from app.core.lifecycle import TaskRecord
from app.services import Services
from app.tasks.shapes import now
from protos.codec import PROTOBUF_CONTENT_TYPE


async def load_owned(services: Services, task_id: str, model: str, user: str) -> TaskRecord:
    """The task's record, if it is `user`'s task of `model`.

    A pending task found past its deadline is expired here, so a client learns it at once
    even when no replica is there to notice.

    Raises:
        TaskNotFound: unknown, expired from the store, or another model's task.
        Forbidden: another user's task.
    """
    # A task others here wait on is known already (and kept current): no need to read it.
    record = services.notifications.current(task_id) or await services.store.get(task_id)
    if record is None or record.model != model:
        hours = services.settings.result_ttl_s / 3600
        raise TaskNotFound(
            f"no task {task_id!r} for model {model!r}: unknown, or its result expired "
            f"(results are kept {hours:g} h)"
        )
    if record.owner != user:
        raise Forbidden("this task belongs to another user")
    if record.past_deadline(now()):
        transition = await services.store.expire_if_due(task_id)
        await services.finished(task_id, model, transition)
        record = await services.store.get(task_id) or record
    return record


def task_response(record: TaskRecord, request: Request) -> Response:
    """200 with the document (or the result's protobuf bytes) once final, 202 before."""
    final = record.status.is_final
    if (
        final
        and record.result is not None
        and PROTOBUF_CONTENT_TYPE in request.headers.get("accept", "")
    ):
        return Response(content=record.result, media_type=PROTOBUF_CONTENT_TYPE)
    return Response(
        content=record.document_json,
        media_type="application/json",
        status_code=status.HTTP_200_OK if final else status.HTTP_202_ACCEPTED,
    )
