"""Per-user limits on the real Redis: submits per second, tasks queued or running, open
streams; each answered 429 with Retry-After and the rate-limit headers, in the common error
shape; overrides and usage through the admin API."""

from __future__ import annotations

import asyncio

import pytest

from app.sharing.limits import LimitOverrides
from deployments.echo import Echo
from tests.utils.factories import unique


def assert_limited(answer, policy):
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"] == "too_many_requests" and answer.json()["detail"]
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["RateLimit-Policy"].startswith(f'"{policy}";q=')
    assert answer.headers["RateLimit"].startswith(f'"{policy}";r=')


@pytest.fixture
async def limited(user, services):
    """A user with some limits of their own (as an admin sets them)."""

    async def make(**limits):
        login = unique("quota")
        headers = await user(login)
        await services.limits.update(login, LimitOverrides(**limits))
        return login, headers

    return make


async def test_submits_past_the_bucket__429_then_allowed_again(gateway, deploy, limited):
    name = (await deploy(Echo())).consumer.spec.name
    _, headers = await limited(submit_burst=3, submits_per_s=2)
    answers = [
        await gateway.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)
        for _ in range(4)
    ]
    assert [a.status_code for a in answers] == [202, 202, 202, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"submits";q=3;w=2'
    assert answers[2].headers["RateLimit"].startswith('"submits";r=0;')
    assert_limited(answers[3], "submits")
    assert answers[3].headers["Retry-After"] == "1"
    await asyncio.sleep(0.6)  # a token back at 2 per second
    again = await gateway.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)
    assert again.status_code == 202


async def test_synchronous_calls_take_from_the_same_bucket(gateway, deploy, limited):
    name = (await deploy(Echo())).consumer.spec.name
    _, headers = await limited(submit_burst=2, submits_per_s=0.1)
    codes = [
        (await gateway.post(f"/models/{name}/infer", json={"text": "x"}, headers=headers))
        for _ in range(3)
    ]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert_limited(codes[2], "submits")


async def test_a_batch_past_the_quota_of_active_tasks_is_refused_whole(
    gateway, deploy, limited, store
):
    harness = await deploy(Echo())
    name = harness.consumer.spec.name
    login, headers = await limited(active_tasks=10)
    first = await gateway.post(f"/models/{name}/batches", json=[{"text": "x"}] * 8, headers=headers)
    assert first.status_code == 202
    over = await gateway.post(f"/models/{name}/batches", json=[{"text": "y"}] * 3, headers=headers)
    assert_limited(over, "tasks")
    assert over.headers["RateLimit-Policy"] == '"tasks";q=10'
    assert over.headers["RateLimit"].startswith('"tasks";r=2;')
    assert "8 of your 10" in over.json()["detail"]
    assert sum(await store.share(name, login)) == 8  # nothing of the refused batch exists
    listed = (await gateway.get("/tasks", params={"model": name}, headers=headers)).json()
    assert len(listed["tasks"]) == 8
    # As tasks finish there is room again.
    await harness.drain()
    assert sum(await store.share(name, login)) == 0
    again = await gateway.post(f"/models/{name}/batches", json=[{"text": "z"}] * 3, headers=headers)
    assert again.status_code == 202


async def test_the_quota_of_active_tasks_is_per_model(gateway, deploy, limited):
    first = (await deploy(Echo())).consumer.spec.name
    second = (await deploy(Echo())).consumer.spec.name
    _, headers = await limited(active_tasks=2)
    for name in (first, second):
        answer = await gateway.post(
            f"/models/{name}/batches", json=[{"text": "x"}] * 2, headers=headers
        )
        assert answer.status_code == 202


async def test_open_streams_past_the_limit__429_and_released_when_they_end(
    gateway, deploy, limited
):
    name = (await deploy(Echo())).consumer.spec.name
    _, headers = await limited(open_streams=2)
    ids = [
        (await gateway.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)).json()[
            "task_id"
        ]
        for _ in range(3)
    ]

    async def long_poll(task_id):
        return await gateway.get(
            f"/models/{name}/result", params={"task_id": task_id, "wait": 1}, headers=headers
        )

    polls = [asyncio.ensure_future(long_poll(task_id)) for task_id in ids[:2]]
    await asyncio.sleep(0.3)
    third = await long_poll(ids[2])
    assert_limited(third, "streams")
    events = await gateway.get(f"/models/{name}/tasks/{ids[2]}/events", headers=headers)
    assert_limited(events, "streams")
    assert [p.status_code for p in await asyncio.gather(*polls)] == [202, 202]
    # Both ended: their leases are back.
    assert (await long_poll(ids[2])).status_code == 202


async def test_admins_set_limits_and_see_usage(gateway, deploy, user, services, admin):
    name = (await deploy(Echo())).consumer.spec.name
    login = unique("watched")
    headers = await user(login)
    await gateway.post(f"/models/{name}/batches", json=[{"text": "x"}] * 3, headers=headers)
    seen = (await gateway.get(f"/admin/users/{login}", headers=admin)).json()
    assert seen["role"] == "user" and seen["limits"]["active_tasks"] == 1000
    assert seen["usage"]["models"] == [{"model": name, "queued_or_running": 3, "held": 0}]
    assert seen["overrides"]["active_tasks"] is None
    changed = await gateway.patch(
        f"/admin/users/{login}/limits",
        json={"active_tasks": 3, "max_priority": "high"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["limits"]["active_tasks"] == 3
    assert changed.json()["overrides"]["max_priority"] == "high"
    refused = await gateway.post(f"/models/{name}/tasks", json={"text": "x"}, headers=headers)
    assert_limited(refused, "tasks")
    # The user sees their own limits and usage too.
    mine = (await gateway.get("/account", headers=headers)).json()
    assert mine["limits"]["active_tasks"] == 3 and mine["usage"]["models"][0]["model"] == name
    # Back to the default.
    reset = await gateway.patch(
        f"/admin/users/{login}/limits", json={"active_tasks": None}, headers=admin
    )
    assert reset.json()["limits"]["active_tasks"] == 1000
    assert (await gateway.get(f"/admin/users/{unique('nobody')}", headers=admin)).json()[
        "error"
    ] == "user_not_found"
    assert (await gateway.get(f"/admin/users/{login}", headers=headers)).status_code == 403
    page = (await gateway.get("/admin/users", params={"limit": 1000}, headers=admin)).json()
    assert login in page["users"]


async def test_every_limited_route_documents_its_429(gateway_app):
    document = gateway_app.openapi()
    for path, method in (
        ("/models/{name}/tasks", "post"),
        ("/models/{name}/batches", "post"),
        ("/models/{name}/infer", "post"),
        ("/models/{name}/result", "get"),
        ("/models/{name}/tasks/{task_id}/events", "get"),
        ("/login", "post"),
        ("/register", "post"),
    ):
        answer = document["paths"][path][method]["responses"]["429"]
        assert set(answer["headers"]) >= {"Retry-After", "RateLimit", "RateLimit-Policy"}, path
        schema = answer["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorOut"}
