"""HTTP helpers for tests that drive a running gateway (tests/e2e)."""

from __future__ import annotations

import concurrent.futures
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx


def promote(login: str, env: dict[str, str] | None = None) -> None:
    """Make `login` an admin the way an operator does: `python -m app.admin promote`, against
    the Redis of `env` (default: this process's environment)."""
    import os
    import sys

    done = subprocess.run(  # noqa: S603 - this interpreter, the project's own command
        [sys.executable, "-m", "app.admin", "promote", login],
        env=env or dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def queue_stat(queue: str, column: str) -> int | None:
    """One `rabbitmqctl list_queues` column of `queue` (e.g. `consumers`,
    `messages_unacknowledged`); None when there is no such queue."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", column],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == queue:
            return int(parts[1])
    return None


def unacked(queue: str) -> int:
    """Messages of `queue` delivered to consumers and not yet acknowledged."""
    return queue_stat(queue, "messages_unacknowledged") or 0


def task_writes(task_ids: list[str]) -> dict[str, int]:
    """How many writes each task saw (its sequence number): 3 for pending, running,
    succeeded; more when a replica took it again after another died with it."""
    import redis

    from app.core.settings import get_settings
    from tests.conftest import REDIS_URL

    prefix = get_settings().redis_prefix
    client = redis.Redis.from_url(REDIS_URL)
    pipe = client.pipeline()
    for task_id in task_ids:
        pipe.hget(f"{prefix}:task:{task_id}", "seq")
    return {t: int(s or 0) for t, s in zip(task_ids, pipe.execute(), strict=True)}


def wait_for(condition: Callable[[], Any], timeout: float = 30, interval: float = 0.2) -> Any:
    """Poll `condition` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def when(value: Any, condition: Callable[[Any], bool]) -> Any:
    """`value` if it meets `condition`, else None (for `wait_for` on a computed value)."""
    return value if condition(value) else None


def submit(http: httpx.Client, headers: dict[str, str], model: str, body: dict[str, Any]) -> str:
    """Submit a task (JSON) and return its id; fails the test unless 202."""
    response = http.post(f"/models/{model}/tasks", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["task_id"])


def wait_result(
    http: httpx.Client, headers: dict[str, str], model: str, task_id: str
) -> dict[str, Any]:
    """Long-poll a task until it is done; return its document."""

    def done() -> httpx.Response | None:
        response = http.get(
            f"/models/{model}/result", params={"task_id": task_id, "wait": 5}, headers=headers
        )
        return response if response.status_code == 200 else None

    document: dict[str, Any] = wait_for(done, timeout=60).json()
    return document


def listed(http: httpx.Client, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    """GET /models by model name."""
    return {m["name"]: m for m in http.get("/models", headers=headers).json()}


def submit_all(
    http: httpx.Client, headers: dict[str, str], model: str, texts: list[str], **fields: Any
) -> dict[str, str]:
    """Submit one echo task per text (8 at a time); task id -> text, in order."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda t: submit(http, headers, model, {"text": t, **fields}), texts))
    return dict(zip(ids, texts, strict=True))


def finish_all(
    http: httpx.Client, headers: dict[str, str], model: str, accepted: dict[str, str]
) -> list[dict[str, Any]]:
    """Wait for every task; assert each succeeded with its own text; return the documents."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        documents = list(pool.map(lambda i: wait_result(http, headers, model, i), accepted))
    wrong = [
        (task_id, doc["status"], doc["result"])
        for (task_id, text), doc in zip(accepted.items(), documents, strict=True)
        if doc["status"] != "succeeded" or doc["result"]["text"] != text
    ]
    assert not wrong, wrong[:5]
    return documents


def parse_events(text: str) -> list[dict[str, str]]:
    """Server-sent events of a stream's text: each event's fields (comments dropped)."""
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if fields:
            events.append(fields)
    return events
