"""Request and response bodies of the gateway's static routes."""

from __future__ import annotations

from datetime import datetime
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.lifecycle import TaskState
from app.sharing.limits import LimitOverrides, UserLimits
from app.sharing.usage import Usage


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(
        min_length=3,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$",
        description="3-64 characters: letters, digits, '.', '_', '@' or '-'.",
        examples=["ada"],
    )
    password: str = Field(
        min_length=8, max_length=256, description="8-256 characters.", examples=["correct horse"]
    )


class UserOut(BaseModel):
    login: str


class AccountOut(BaseModel):
    login: str
    role: str = Field(description="user, or admin.")
    limits: UserLimits = Field(description="Your limits in force (-1: none).")
    usage: Usage = Field(description="What you use of them now.")


class AdminUserOut(AccountOut):
    overrides: LimitOverrides = Field(
        description="The limits an admin set for this user (null fields: the defaults)."
    )


class UserListOut(BaseModel):
    users: list[str] = Field(description="Logins, in no particular order.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class WebhookSecretOut(BaseModel):
    secret: str = Field(
        description="Verifies your deliveries (Standard Webhooks: `whsec_` + base64 key)."
    )
    previous: str | None = Field(
        description="The secret before the last rotation, still signing deliveries during "
        "the grace period."
    )


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


class ModelOut(BaseModel):
    name: str
    request_type: str = Field(description="Full name of the request protobuf message.")
    response_type: str = Field(description="Full name of the response protobuf message.")
    instances: int = Field(description="Live instances (replicas) consuming the queue.")
    queue_length: int | None = Field(
        description="Tasks waiting in the model's queue (null if RabbitMQ did not answer)."
    )
    description: str
    version: str = Field(description="The model's version (`@model(version=...)`).")
    cached: bool = Field(description="Identical requests are answered from a cache.")
    streams: bool = Field(
        default=False,
        description='Its output comes in chunks as it is produced (README, "Streaming").',
    )
    disabled: bool = Field(
        default=False, description="An admin disabled the model: submits get 503."
    )


class DisabledOut(BaseModel):
    by: str | None = Field(description="The admin who disabled the model (shown to admins).")
    at: datetime
    reason: str


class QueueOut(BaseModel):
    ready: int | None = Field(description="Tasks waiting in the queue (null: RabbitMQ silent).")
    unacked: int = Field(description="Tasks the replicas hold: running or prefetched.")
    dead_letters: int | None = Field(description="Messages in the model's dead-letter queue.")


class ReplicaOut(BaseModel):
    replica_id: str
    node_id: str | None = Field(description="Ray node the replica runs on (shown to admins).")
    node_address: str | None = Field(description="The node's address (shown to admins).")
    pid: int | None = Field(description="The replica's process id (shown to admins).")
    state: str = Field(description="running, or refused (its name was taken; it stops).")
    rss_bytes: int = Field(description="Resident memory of the replica's process.")
    cpu_percent: float = Field(description="CPU use since its previous report (100 = 1 core).")
    started_at: datetime | None
    uptime_s: float
    tasks_succeeded: int
    tasks_failed: int
    tasks_in_flight: int
    last_ping: datetime = Field(description="When the registry last heard from it.")
    missed_pings: int


class ModelDetail(BaseModel):
    name: str
    version: str
    description: str
    request_type: str
    response_type: str
    fingerprint: str = Field(description="Digest of the two messages' descriptors.")
    cached: bool
    streams: bool = Field(default=False, description="Its output comes in chunks.")
    disabled: DisabledOut | None = Field(description="Set while an admin has it disabled.")
    queue: QueueOut
    replicas: list[ReplicaOut]


class TaskAccepted(BaseModel):
    task_id: str
    status: str = "pending"


class BatchAccepted(BaseModel):
    task_ids: list[str] = Field(description="One task id per request message, in order.")
    status: str = "pending"


class TaskPage(BaseModel):
    """One page of the caller's tasks, newest first (results are left out: fetch them with
    the result route)."""

    tasks: list[TaskState]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class ErrorOut(BaseModel):
    error: str = Field(description="A stable, machine-readable code.")
    detail: object = Field(description="What went wrong, for a human.")


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_RATE_LIMIT = {
    **_RETRY_AFTER,
    "RateLimit-Policy": {
        "description": 'The limit reached (IETF draft): `"<name>";q=<quota>;w=<seconds>`.',
        "schema": {"type": "string"},
    },
    "RateLimit": {
        "description": 'What is left of it: `"<name>";r=<remaining>;t=<seconds to reset>`.',
        "schema": {"type": "string"},
    },
}
_ERROR_HEADERS = {429: _RATE_LIMIT, 503: _RETRY_AFTER}
_ERROR_DESCRIPTIONS = {
    429: "A limit of yours was reached (submits per second, tasks queued or running, open "
    "streams), or too many tries from your address.",
}


def error_responses(
    *codes: int, shape: type[BaseModel] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error codes, all in the common error shape (or `shape`),
    429 and 503 with the headers they carry."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "model": shape or ErrorOut,
            "description": _ERROR_DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
        }
        if code in _ERROR_HEADERS:
            entry["headers"] = _ERROR_HEADERS[code]
        responses[code] = entry
    return responses


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class DisableIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(default="", max_length=500, description="Shown to clients with the 503.")


class SwitchOut(BaseModel):
    model: str
    disabled: DisabledOut | None


class DeadLetterOut(BaseModel):
    task_id: str
    owner: str
    attempts: int = Field(description="Attempts the task had made when it was dead-lettered.")
    reason: str = Field(description="RabbitMQ's reason: rejected, expired, maxlen, ...")
    dead_lettered_at: datetime | None
    error: str = Field(description="The task's last error.")
    error_code: str


class DeadLettersOut(BaseModel):
    model: str
    total: int = Field(description="Messages in the dead-letter queue.")
    items: list[DeadLetterOut] = Field(description="The oldest ones, up to `limit`.")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task_ids: list[str] | None = Field(
        default=None, max_length=10_000, description="Only these tasks (default: every one)."
    )


class ReplayedOut(BaseModel):
    model: str
    replayed: list[str] = Field(description="Task ids sent back to the model's queue.")


class PurgedOut(BaseModel):
    model: str
    purged: int


class NodeOut(BaseModel):
    node_id: str
    address: str
    memory_total_bytes: int
    memory_available_bytes: int
    replicas: int = Field(description="Model replicas running on the node.")


class StatusOut(BaseModel):
    version: str = Field(description="The platform's version.")
    time: datetime
    gateway_pid: int
    gateway_rss_bytes: int = Field(description="Memory of the gateway replica that answered.")
    gateway_node_memory_total_bytes: int
    gateway_node_memory_available_bytes: int
    nodes: list[NodeOut] = Field(description="Nodes running model replicas.")
    replica_rss_bytes: dict[str, int] = Field(description="Memory per `model/replica`.")
    uptime_s: float = Field(description="How long the answering gateway replica has run.")
