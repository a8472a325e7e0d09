"""The task envelope that travels through RabbitMQ, and the task record kept in Redis."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.protobuf.message import DecodeError

from protos.codec import PROTOBUF_CONTENT_TYPE
from protos.task_pb2 import Task


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED)


class EnvelopeError(ValueError):
    """Bytes on a queue that are not a usable task envelope."""


def new_task_id() -> str:
    """An unguessable task id (UUID4, 122 random bits)."""
    return str(uuid.uuid4())


def new_envelope(*, model: str, owner: str, payload: bytes, task_id: str | None = None) -> Task:
    """Build the envelope for a request message already serialized to protobuf bytes."""
    task = Task(
        task_id=task_id or new_task_id(),
        model=model,
        owner=owner,
        payload=payload,
        content_type=PROTOBUF_CONTENT_TYPE,
        attempt=1,
    )
    task.created_at.GetCurrentTime()
    return task


def decode_envelope(body: bytes) -> Task:
    """Parse and sanity-check an envelope taken from a queue.

    Raises:
        EnvelopeError: not a Task, or a Task without the fields a consumer needs.
    """
    task = Task()
    try:
        task.ParseFromString(body)
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise EnvelopeError(f"not a task envelope: {exc}") from exc
    if not task.task_id or not task.model:
        raise EnvelopeError("task envelope lacks task_id or model")
    if task.content_type and task.content_type != PROTOBUF_CONTENT_TYPE:
        raise EnvelopeError(f"unsupported payload content type {task.content_type!r}")
    return task


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@dataclass(frozen=True)
class TaskRecord:
    """What Redis holds about one task: its state, timings and, once done, its result."""

    task_id: str
    model: str
    owner: str
    status: TaskStatus
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    error: str | None = None
    error_code: str | None = None
    # The response message as protobuf bytes and as its proto3 JSON text, both written by the
    # replica, so results stay readable after the model is undeployed.
    result: bytes | None = None
    result_json: str | None = None

    def to_document(self, result: Any = None) -> dict[str, Any]:
        """The public JSON document for this task (`result` is the decoded JSON result)."""
        return {
            "task_id": self.task_id,
            "model": self.model,
            "status": self.status.value,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "attempts": self.attempts,
            "error": self.error,
            "error_code": self.error_code,
            "result": result,
        }


def now() -> float:
    return time.time()
