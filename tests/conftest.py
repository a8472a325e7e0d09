"""Shared fixtures: service URLs, and skip-or-fail when a service is missing."""

from __future__ import annotations

import os

import pytest

# Database 15, not 0: tests flush it, and a local platform may be using database 0.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
AMQP_URL = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def service_missing(what: str, exc: BaseException) -> None:
    """A missing service skips a test locally but fails it in CI (where CI is set)."""
    message = f"{what} is not reachable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
