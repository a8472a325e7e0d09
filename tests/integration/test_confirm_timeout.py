"""A publish that reaches the queue but whose confirm times out: the client hears 503, and the
task never runs (a RabbitMQ memory alarm blocks publishers, then lifts)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import pytest

from tests.utils.models import Counting

pytestmark = pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl")


def rabbitmqctl(*args: str) -> str:
    return subprocess.run(
        ["rabbitmqctl", *args], check=True, capture_output=True, text=True, timeout=60
    ).stdout.strip()


@pytest.fixture
def memory_alarm():
    """Raise RabbitMQ's memory alarm on demand; always lift it again."""
    previous = rabbitmqctl("eval", "vm_memory_monitor:get_vm_memory_high_watermark().")
    try:
        float(previous)
    except ValueError:
        previous = "0.4"
    raised = []

    def raise_alarm() -> None:
        rabbitmqctl("set_vm_memory_high_watermark", "0")
        raised.append(True)

    def lift() -> None:
        rabbitmqctl("set_vm_memory_high_watermark", previous)

    yield raise_alarm, lift
    lift()


async def test_unconfirmed_publish__503_and_the_task_never_runs(
    gateway, user, deploy, memory_alarm, store, settings
):
    raise_alarm, lift = memory_alarm
    headers = await user()
    model = await deploy(Counting())
    name = model.consumer.spec.name
    calls = Counting.calls
    # A connection that published before is blocked by the alarm: warm the gateway's up.
    assert (
        await gateway.post(f"/models/{name}/tasks", json={"text": "warm"}, headers=headers)
    ).status_code == 202
    await model.drain()
    raise_alarm()
    response = await gateway.post(f"/models/{name}/tasks", json={"text": "lost?"}, headers=headers)
    assert response.status_code == 503, response.text
    assert (
        "not accepted" in response.json()["detail"] or "did not accept" in response.json()["detail"]
    )
    assert "Retry-After" in response.headers
    lift()
    # The publish was in flight: once the alarm lifts, the message does reach the queue.
    for _ in range(100):
        if await model.queue_length(model.names.work):
            break
        await asyncio.sleep(0.1)
    assert await model.queue_length(model.names.work) == 1, "the late message never arrived"
    assert await model.drain() == 1
    assert Counting.calls == calls + 1  # only the warm-up ran
    assert model.consumer.stats.skipped == 1
    tasks = (await gateway.get("/tasks", params={"model": name}, headers=headers)).json()["tasks"]
    refused = [t for t in tasks if t["status"] == "failed"]
    assert len(refused) == 1 and refused[0]["error_code"] == "not_accepted"
