"""Roles and the admin API on the real Redis and RabbitMQ: disabling a model while its queue
drains, dead letters listed without being consumed, replayed after a fix, purged; and the
model's detail and schema."""

from __future__ import annotations

import asyncio
import logging

import aio_pika
from google.protobuf import descriptor_pb2

from app.admin import main as admin_cli
from app.main import create_app
from deployments.echo import Echo
from tests.utils.factories import unique
from tests.utils.models import Fixable

ADMIN_ROUTES = [
    ("POST", "/admin/models/{m}/disable"),
    ("POST", "/admin/models/{m}/enable"),
    ("GET", "/admin/models/{m}/dead-letters"),
    ("POST", "/admin/models/{m}/dead-letters/replay"),
    ("POST", "/admin/models/{m}/dead-letters/purge"),
    ("GET", "/admin/users"),
    ("GET", "/admin/users/{login}"),
    ("PATCH", "/admin/users/{login}/limits"),
    ("GET", "/status"),
]


async def test_every_admin_route_needs_an_admin(gateway, user, deploy, gateway_app):
    harness = await deploy(Echo())
    name = harness.consumer.spec.name
    documented = {
        (method, path)
        for path, item in gateway_app.openapi()["paths"].items()
        for method in item
        if path.startswith("/admin") or path == "/status"
    }
    assert documented == {(m.lower(), p.replace("{m}", "{name}")) for m, p in ADMIN_ROUTES}
    headers = await user()
    for method, path in ADMIN_ROUTES:
        url = path.format(m=name, login="somebody")
        assert (await gateway.request(method, url)).status_code == 401
        refused = await gateway.request(method, url, headers=headers)
        assert refused.status_code == 403, (method, url)
        assert refused.json() == {"error": "forbidden", "detail": "this needs an admin"}


async def test_admins_come_from_the_command_line_only(gateway, user, services, admin):
    assert (await gateway.get("/status", headers=admin)).status_code == 200
    login = unique("hopeful")
    # A login nobody registered cannot be promoted ahead of time...
    assert await asyncio.to_thread(admin_cli, ["promote", login]) == 1
    # ...so whoever registers it is a plain user.
    headers = await user(login)
    assert (await gateway.get("/status", headers=headers)).status_code == 403
    mine = (await gateway.get("/account", headers=headers)).json()
    assert (mine["login"], mine["role"]) == (login, "user")
    assert await asyncio.to_thread(admin_cli, ["promote", login]) == 0
    services.accounts.forget(login)  # as every gateway does within APP_ACCOUNT_CACHE_S
    status = await gateway.get("/status", headers=headers)
    assert status.status_code == 200
    body = status.json()
    assert body["gateway_rss_bytes"] > 0 and body["version"] and body["time"]


async def test_a_disabled_model_refuses_new_work_while_its_queue_drains(
    gateway, user, admin, deploy, settings, registry, replicas, caplog
):
    harness = await deploy(Echo())
    name = harness.consumer.spec.name
    headers = await user()
    queued = await gateway.post(f"/models/{name}/tasks", json={"text": "q"}, headers=headers)
    assert queued.status_code == 202
    with caplog.at_level(logging.INFO, logger="app.audit"):
        disabled = await gateway.post(
            f"/admin/models/{name}/disable", json={"reason": "bad weights"}, headers=admin
        )
    assert disabled.status_code == 200 and disabled.json()["disabled"]["reason"] == "bad weights"
    assert any("disabled model" in r.message and name in r.message for r in caplog.records)
    for path, body in ((f"/models/{name}/tasks", {"text": "x"}), (f"/models/{name}/infer", {})):
        refused = await gateway.post(path, json=body, headers=headers)
        assert refused.status_code == 503 and refused.headers["Retry-After"]
        assert refused.json()["error"] == "model_disabled"
        assert "bad weights" in refused.json()["detail"]
    batch = await gateway.post(f"/models/{name}/batches", json=[{"text": "b"}], headers=headers)
    assert batch.status_code == 503
    listed = {m["name"]: m for m in (await gateway.get("/models", headers=headers)).json()}
    assert listed[name]["disabled"] is True
    detail = (await gateway.get(f"/models/{name}", headers=headers)).json()
    assert detail["disabled"]["reason"] == "bad weights" and detail["queue"]["ready"] == 1
    assert detail["disabled"]["by"] is None  # who did it is for admins
    seen_by_admin = (await gateway.get(f"/models/{name}", headers=admin)).json()
    assert seen_by_admin["disabled"]["by"].startswith("admin")
    # What was queued before still runs, and its result is readable.
    assert await harness.drain() == 1
    task_id = queued.json()["task_id"]
    done = await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    assert done.json()["status"] == "succeeded"
    # The flag is in Redis: a gateway started afterwards honours it too.
    other = create_app(settings=settings, registry=registry, replicas=replicas)
    async with other.router.lifespan_context(other):
        assert await other.state.services.switches.get(name) is not None
    enabled = await gateway.post(f"/admin/models/{name}/enable", headers=admin)
    assert enabled.status_code == 200 and enabled.json()["disabled"] is None
    again = await gateway.post(f"/models/{name}/tasks", json={"text": "y"}, headers=headers)
    assert again.status_code == 202
    unknown = await gateway.post("/admin/models/no-such-model/disable", headers=admin)
    assert unknown.status_code == 404


async def test_dead_letters_listed_without_consuming_replayed_after_a_fix_and_purged(
    gateway, user, admin, deploy
):
    model = Fixable()
    harness = await deploy(model)
    name = harness.consumer.spec.name
    headers = await user()
    ids = []
    for text in ("first", "second", "third"):
        accepted = await gateway.post(f"/models/{name}/tasks", json={"text": text}, headers=headers)
        ids.append(accepted.json()["task_id"])
    assert await harness.drain() == 3
    await harness.queue_length(harness.names.dead_letter, expect=3)
    for _ in range(2):  # looking twice finds the same letters: nothing was taken
        listed = await gateway.get(f"/admin/models/{name}/dead-letters", headers=admin)
        assert listed.status_code == 200
        body = listed.json()
        assert body["total"] == 3 and [i["task_id"] for i in body["items"]] == ids
        first = body["items"][0]
        assert first["error"] == "RuntimeError: bug in the model"
        assert first["error_code"] == "model_error" and first["attempts"] == 1
        assert first["reason"] == "rejected" and first["dead_lettered_at"]
    assert await harness.queue_length(harness.names.dead_letter) == 3
    limited = await gateway.get(
        f"/admin/models/{name}/dead-letters", params={"limit": 1}, headers=admin
    )
    assert [i["task_id"] for i in limited.json()["items"]] == ids[:1]
    detail = (await gateway.get(f"/models/{name}", headers=headers)).json()
    assert detail["queue"]["dead_letters"] == 3

    model.broken = False  # the fix is deployed
    replayed = await gateway.post(
        f"/admin/models/{name}/dead-letters/replay", json={"task_ids": ids[:2]}, headers=admin
    )
    assert replayed.status_code == 200 and replayed.json()["replayed"] == ids[:2]
    pending = await gateway.get(
        f"/models/{name}/result", params={"task_id": ids[0]}, headers=headers
    )
    assert pending.json()["status"] == "pending" and pending.json()["error"] is None
    assert await harness.drain() == 2
    for task_id in ids[:2]:
        document = (
            await gateway.get(
                f"/models/{name}/result", params={"task_id": task_id}, headers=headers
            )
        ).json()
        assert document["status"] == "succeeded" and document["attempts"] == 1
    still = (await gateway.get(f"/admin/models/{name}/dead-letters", headers=admin)).json()
    assert [i["task_id"] for i in still["items"]] == ids[2:]
    purged = await gateway.post(f"/admin/models/{name}/dead-letters/purge", headers=admin)
    assert purged.json() == {"model": name, "purged": 1}
    assert await harness.queue_length(harness.names.dead_letter) == 0
    gone = await gateway.get(f"/models/{name}/result", params={"task_id": ids[2]}, headers=headers)
    assert gone.json()["status"] == "failed"  # purging drops the letter, not the record
    missing = await gateway.get("/admin/models/never-deployed/dead-letters", headers=admin)
    assert missing.status_code == 404 and missing.json()["error"] == "queue_not_found"


async def test_replaying_every_letter_runs_each_task_again_and_leaves_what_cannot_be_read(
    gateway, user, admin, deploy, amqp
):
    model = Fixable()
    harness = await deploy(model)
    name = harness.consumer.spec.name
    headers = await user()
    texts = ["alpha", "beta"]
    ids = [
        (await gateway.post(f"/models/{name}/tasks", json={"text": t}, headers=headers)).json()[
            "task_id"
        ]
        for t in texts
    ]
    await harness.drain()
    channel = await amqp.channel()
    await channel.default_exchange.publish(
        aio_pika.Message(b"\xff not an envelope", message_id="garbage"),
        routing_key=harness.names.dead_letter,
    )
    await harness.queue_length(harness.names.dead_letter, expect=3)
    model.broken = False
    replayed = await gateway.post(f"/admin/models/{name}/dead-letters/replay", headers=admin)
    assert replayed.status_code == 200 and replayed.json()["replayed"] == ids
    assert await harness.drain() == 2
    for task_id, text in zip(ids, texts, strict=True):
        document = (
            await gateway.get(
                f"/models/{name}/result", params={"task_id": task_id}, headers=headers
            )
        ).json()
        assert document["status"] == "succeeded" and document["result"]["text"] == text
    left = (await gateway.get(f"/admin/models/{name}/dead-letters", headers=admin)).json()
    assert left["total"] == 1 and left["items"][0]["error"] == "undecodable message"
    await channel.close()


async def test_a_replay_whose_publish_fails_leaves_the_letter_and_the_failure(
    gateway, user, admin, deploy, monkeypatch
):
    import app.tasks.dead_letters as dead_letters
    from app.core.broker import BrokerError

    harness = await deploy(Fixable())
    name = harness.consumer.spec.name
    headers = await user()
    task_id = (
        await gateway.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)
    ).json()["task_id"]
    await harness.drain()
    await harness.queue_length(harness.names.dead_letter, expect=1)

    async def refused(*args, **kwargs):
        raise BrokerError("the broker refused the publish")

    monkeypatch.setattr(dead_letters, "publish_confirmed", refused)
    answer = await gateway.post(
        f"/admin/models/{name}/dead-letters/replay", json={"task_ids": [task_id]}, headers=admin
    )
    assert answer.status_code == 503
    assert await harness.queue_length(harness.names.dead_letter, expect=1) == 1
    document = (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=headers)
    ).json()
    assert document["status"] == "failed" and document["error_code"] == "model_error"
    assert await harness.drain() == 0  # nothing was queued to run


async def test_the_schema_is_downloadable_as_a_file_descriptor_set(gateway, user, deploy):
    harness = await deploy(Echo())
    name = harness.consumer.spec.name
    headers = await user()
    answer = await gateway.get(f"/models/{name}/schema", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/x-protobuf"
    files = descriptor_pb2.FileDescriptorSet.FromString(answer.content)
    messages = {f"{f.package}.{m.name}" for f in files.file for m in f.message_type}
    assert {"echo.EchoRequest", "echo.EchoResponse"} <= messages
    assert answer.headers["x-request-type"] == "echo.EchoRequest"
    assert (await gateway.get("/models/nope/schema", headers=headers)).status_code == 404


async def test_metrics_carry_what_the_alerts_watch(gateway, user, admin, deploy):
    harness = await deploy(Echo())
    name = harness.consumer.spec.name
    text = (await gateway.get("/metrics")).text
    for dependency in ("redis", "rabbitmq", "registry"):
        assert f'app_dependency_up{{dependency="{dependency}"}} 1.0' in text
    assert f'app_model_disabled{{model="{name}"}}' not in text
    await gateway.post(f"/admin/models/{name}/disable", headers=admin)
    text = (await gateway.get("/metrics")).text
    assert f'app_model_disabled{{model="{name}"}} 1.0' in text
