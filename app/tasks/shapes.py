"""The values task writes take and give: a task being submitted, a transition's outcome."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from app.core.lifecycle import NO_RECORD, TaskStatus
from app.sharing.fair_share import Priority


@dataclass(frozen=True)
class Transition:
    """The outcome of a state write."""

    written: bool
    # The task's status after the call; None when there is no record.
    status: TaskStatus | None
    seq: int
    # The callback URL when the task is final and its delivery is still to be made.
    webhook_url: str | None = None
    # When this write ended the task: how many tasks its owner still has held (fair share),
    # one of which may now move into the work queue.
    owner_held: int = 0

    @classmethod
    def parse(cls, raw: Any) -> Transition:
        written, status, seq, hook, *rest = raw
        text = status.decode() if isinstance(status, bytes) else str(status)
        url = hook.decode() if isinstance(hook, bytes) else str(hook)
        return cls(
            written=bool(int(written)),
            status=None if text == NO_RECORD else TaskStatus(text),
            seq=int(seq),
            webhook_url=url or None,
            owner_held=int(rest[0]) if rest else 0,
        )


@dataclass(frozen=True)
class CachedResult:
    """A model's answer to a request, as stored (see `app.inference.cache`)."""

    result: bytes
    result_json: str


@dataclass(frozen=True)
class PendingTask:
    """A task being submitted."""

    task_id: str
    model: str
    owner: str
    created_at: float
    deadline: float | None = None
    webhook_url: str | None = None
    # An identical request's answer: the task is created succeeded with it.
    cached: CachedResult | None = None
    model_version: str | None = None
    priority: Priority = Priority.NORMAL

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "model": self.model,
            "owner": self.owner,
            "created_at": self.created_at,
            "attempts": 0,
        }
        if self.priority is not Priority.NORMAL:
            fields["priority"] = self.priority.value
        if self.model_version is not None:
            fields["model_version"] = self.model_version
        if self.cached is not None:
            fields.update(
                cached=1,
                started_at=self.created_at,
                finished_at=self.created_at,
                result=self.cached.result,
                result_json=self.cached.result_json,
            )
        if self.deadline is not None:
            fields["deadline"] = self.deadline
        if self.webhook_url:
            fields.update(
                webhook_url=self.webhook_url, webhook_status="pending", webhook_attempts=0
            )
        return fields


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel request did: cancelled at once, asked the replica, or nothing (final)."""

    transition: Transition
    requested: bool  # the task was running: its replica was asked to stop


def now() -> float:
    return time.time()


def decoded(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def as_field(value: Any) -> str:
    """A field value as Redis will hold it (floats at full precision)."""
    return repr(value) if isinstance(value, float) else str(value)


def field_args(pairs: Any) -> list[Any]:
    """Field pairs as script arguments: bytes as they are, anything else as text."""
    args: list[Any] = []
    for name, value in pairs:
        args.extend((name, value if isinstance(value, bytes) else as_field(value)))
    return args
