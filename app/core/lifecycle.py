"""The task lifecycle: its states, the transitions between them, and the public task document.

This module is the one owner of what a task can be. Writers (the gateway, the replicas, the
webhook dispatcher) change a task only through `ResultStore`, whose Lua script takes the
allowed source states of every write from `TRANSITIONS`; readers (the result route, server-sent
events, task lists, webhooks) all send `TaskDocument`, which is also the schema `/openapi.json`
documents.

    (new) ──▶ pending ──▶ running ──▶ succeeded | failed | cancelled
                 │  ▲         │
                 │  └─────────┘  a failed attempt waits for its retry
                 └──▶ cancelled | expired | failed (the submit was not confirmed)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED, TaskStatus.EXPIRED}
)

# The state of a task that has no record (never created, or expired from Redis).
NO_RECORD = "-"

# For every state, the states a task may enter it from. A final state is the source of no
# transition, so a result, once stored, is never overwritten (a redelivered task cannot
# corrupt it).
TRANSITIONS: dict[TaskStatus, frozenset[str]] = {
    # Submitted; or back after a failed attempt, waiting for its retry.
    TaskStatus.PENDING: frozenset({NO_RECORD, TaskStatus.RUNNING}),
    # A replica took it; again after a redelivery; a progress report while it runs. A task
    # whose record expired while it waited is recreated from its envelope.
    TaskStatus.RUNNING: frozenset({NO_RECORD, TaskStatus.PENDING, TaskStatus.RUNNING}),
    # A replica's answer; or, from no record, an identical request's cached answer.
    TaskStatus.SUCCEEDED: frozenset({NO_RECORD, TaskStatus.RUNNING}),
    # The model failed for good; or the submit was not confirmed by the broker (pending).
    TaskStatus.FAILED: frozenset({TaskStatus.PENDING, TaskStatus.RUNNING}),
    TaskStatus.CANCELLED: frozenset({TaskStatus.PENDING, TaskStatus.RUNNING}),
    # Not started before its deadline.
    TaskStatus.EXPIRED: frozenset({TaskStatus.PENDING}),
}


def allowed_sources(target: TaskStatus) -> str:
    """The states `target` may be entered from, space-padded for the store's Lua script."""
    return " " + " ".join(sorted(TRANSITIONS[target])) + " "


# Error codes of tasks that ended without the model's answer.
ERROR_NOT_ACCEPTED = "not_accepted"
ERROR_DEADLINE = "deadline_exceeded"

WebhookStatus = Literal["pending", "delivered", "failed"]


class Progress(BaseModel):
    """What a running model last reported about its progress."""

    fraction: float = Field(ge=0, le=1, description="Share of the work done, 0 to 1.")
    message: str = Field(description="A short note from the model; may be empty.")


class WebhookDelivery(BaseModel):
    """Where the final document is POSTed, and how that went."""

    url: str
    status: WebhookStatus = Field(
        description="pending until the receiver answered 2xx (delivered) or every attempt "
        "failed (failed)."
    )
    attempts: int = Field(description="Delivery attempts made so far.")
    last_error: str | None = Field(description="Why the last attempt failed, if it did.")
    delivered_at: datetime | None


class TaskState(BaseModel):
    """A task without its result (what task lists show)."""

    task_id: str
    model: str
    status: TaskStatus = Field(
        description="pending, running, then succeeded, failed, cancelled or expired."
    )
    created_at: datetime | None
    started_at: datetime | None = Field(description="When a replica last took the task.")
    finished_at: datetime | None
    attempts: int = Field(description="Attempts started so far.")
    error: str | None = Field(
        description="Error text of a failed task (or of the last failed attempt, while the "
        "task waits for its retry)."
    )
    error_code: str | None = Field(
        description="invalid_input, model_error, bad_payload, bad_response, not_accepted, "
        "deadline_exceeded, ..."
    )
    deadline: datetime | None = Field(
        description="The task expires if no replica has started it by then."
    )
    progress: Progress | None = Field(description="The model's last progress report.")
    webhook: WebhookDelivery | None = Field(description="The callback, when one was given.")
    model_version: str | None = Field(
        description="Version of the model that took the task (or whose cached answer it got)."
    )
    cached: bool = Field(
        default=False, description="Answered from the model's cache of identical requests."
    )
    chunks: int = Field(
        default=0,
        description="Chunks a streaming model has produced so far (each an `event: chunk` "
        "on the task's event stream).",
    )
    priority: Literal["low", "normal", "high"] = Field(
        default="normal", description="Its order among its owner's queued tasks of the model."
    )


class TaskDocument(TaskState):
    """A task as every reader sees it: the result route, server-sent events, webhooks."""

    result: dict[str, Any] | None = Field(
        description="The response message in proto3 JSON form, once succeeded."
    )


def _iso(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


def _text(raw: Mapping[str, str], name: str) -> str | None:
    return raw.get(name) or None


def _number(raw: Mapping[str, str], name: str) -> float | None:
    value = raw.get(name)
    return float(value) if value else None


@dataclass(frozen=True)
class TaskRecord:
    """What Redis holds about one task: a flat hash, parsed.

    `fields` keeps the hash as text (but the result bytes), so a change notification, which
    carries the fields it wrote, can be merged into a record without reading Redis again.
    """

    task_id: str
    fields: Mapping[str, str]
    # The response message as protobuf bytes (its JSON form is in `fields["result_json"]`).
    result: bytes | None = None

    @classmethod
    def from_hash(cls, task_id: str, raw: Mapping[Any, Any]) -> TaskRecord | None:
        """Parse `HGETALL` output; None for no record (missing, or only stray fields)."""
        fields: dict[str, str] = {}
        result: bytes | None = None
        for key, value in raw.items():
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name == "result":
                result = value if isinstance(value, bytes) else str(value).encode()
            else:
                fields[name] = value.decode() if isinstance(value, bytes) else str(value)
        if "status" not in fields:
            return None
        return cls(task_id=task_id, fields=fields, result=result)

    def merged(self, update: Mapping[str, str]) -> TaskRecord:
        """This record with the fields of a change notification applied."""
        return replace(self, fields={**self.fields, **update})

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.fields["status"])

    @property
    def seq(self) -> int:
        """How many writes the task has seen; change notifications carry the same number."""
        return int(self.fields.get("seq") or 0)

    @property
    def model(self) -> str:
        return self.fields.get("model", "")

    @property
    def owner(self) -> str:
        return self.fields.get("owner", "")

    @property
    def attempts(self) -> int:
        return int(self.fields.get("attempts") or 0)

    @property
    def created_at(self) -> float:
        return _number(self.fields, "created_at") or 0.0

    @property
    def deadline(self) -> float | None:
        return _number(self.fields, "deadline")

    @property
    def webhook_url(self) -> str | None:
        return _text(self.fields, "webhook_url")

    @property
    def webhook_status(self) -> str | None:
        return _text(self.fields, "webhook_status")

    @property
    def result_json(self) -> str | None:
        return _text(self.fields, "result_json")

    @property
    def chunks(self) -> int:
        """Chunks of a streaming model written so far."""
        return int(self.fields.get("chunks") or 0)

    @property
    def cancel_requested(self) -> bool:
        return self.fields.get("cancel_requested") == "1"

    def past_deadline(self, now: float) -> bool:
        """Pending, never started, and its deadline has passed."""
        deadline = self.deadline
        return (
            self.status is TaskStatus.PENDING
            and self.attempts == 0
            and deadline is not None
            and now >= deadline
        )

    @cached_property
    def document_json(self) -> bytes:
        """The document as JSON, made once per record however many waiters send it."""
        return self.document().model_dump_json().encode()

    def document(self) -> TaskDocument:
        """The public document of this task."""
        result_json = self.result_json
        return TaskDocument(
            **self._state_fields(), result=json.loads(result_json) if result_json else None
        )

    def state(self) -> TaskState:
        """The public document of this task, but its result."""
        return TaskState(**self._state_fields())

    def _state_fields(self) -> dict[str, Any]:
        raw = self.fields
        progress = None
        if raw.get("progress"):
            progress = Progress(
                fraction=float(raw["progress"]), message=raw.get("progress_message", "")
            )
        webhook = None
        if self.webhook_url:
            webhook = WebhookDelivery(
                url=self.webhook_url,
                status=raw.get("webhook_status", "pending"),  # type: ignore[arg-type]
                attempts=int(raw.get("webhook_attempts") or 0),
                last_error=_text(raw, "webhook_error"),
                delivered_at=_iso(_number(raw, "webhook_delivered_at")),
            )
        return {
            "task_id": self.task_id,
            "model": self.model,
            "status": self.status,
            "created_at": _iso(_number(raw, "created_at")),
            "started_at": _iso(_number(raw, "started_at")),
            "finished_at": _iso(_number(raw, "finished_at")),
            "attempts": self.attempts,
            "error": _text(raw, "error"),
            "error_code": _text(raw, "error_code"),
            "deadline": _iso(self.deadline),
            "progress": progress,
            "webhook": webhook,
            "model_version": _text(raw, "model_version"),
            "cached": raw.get("cached") == "1",
            "chunks": self.chunks,
            "priority": raw.get("priority") or "normal",
        }
