"""Builders shared by tests."""

from __future__ import annotations

import uuid

from deployments.sdk import ModelSpec
from protos.echo_pb2 import EchoRequest, EchoResponse


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def echo_spec(name: str, **overrides: object) -> ModelSpec:
    values: dict[str, object] = {
        "name": name,
        "request": EchoRequest,
        "response": EchoResponse,
        "description": "echo for tests",
        "max_attempts": 3,
        "retry_backoff_s": 0.05,
    }
    values.update(overrides)
    return ModelSpec(**values)  # type: ignore[arg-type]
