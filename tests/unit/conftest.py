"""Unit tests run without any service: starting Ray here is a mistake."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings tests see only what they set, whatever the shell or other suites exported."""
    import os

    for name in list(os.environ):
        if name.startswith("APP_"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _forbid_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not start Ray; move this test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)
