"""Request and response bodies of the gateway's static routes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.lifecycle import TaskState


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


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error codes, all in the common error shape."""
    return {code: {"model": ErrorOut, "description": HTTPStatus(code).phrase} for code in codes}


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)
