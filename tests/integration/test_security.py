"""Users, tokens, ownership and hostile input, against the gateway on real Redis/RabbitMQ."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from deployments.echo import Echo
from tests.utils.factories import unique


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == code
    assert "Traceback" not in response.text


async def test_register_login_and_duplicate(gateway):
    credentials = {"login": unique("ada"), "password": "correct horse battery"}
    first = await gateway.post("/register", json=credentials)
    assert first.status_code == 201 and first.json() == {"login": credentials["login"]}
    assert_error(await gateway.post("/register", json=credentials), 409, "conflict")
    token = await gateway.post("/login", json=credentials)
    assert token.status_code == 200
    body = token.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["access_token"]


async def test_login_with_oauth2_form(gateway):
    credentials = {"login": unique("form"), "password": "correct horse battery"}
    await gateway.post("/register", json=credentials)
    response = await gateway.post(
        "/login", data={"username": credentials["login"], "password": credentials["password"]}
    )
    assert response.status_code == 200
    assert response.json()["access_token"]


async def test_wrong_password_and_unknown_login__same_401(gateway):
    login = unique("bob")
    await gateway.post("/register", json={"login": login, "password": "right password"})
    wrong = await gateway.post("/login", json={"login": login, "password": "wrong password"})
    unknown = await gateway.post(
        "/login", json={"login": unique("nobody"), "password": "whatever1"}
    )
    assert_error(wrong, 401, "unauthorized")
    assert_error(unknown, 401, "unauthorized")
    assert wrong.json()["detail"] == unknown.json()["detail"]


async def test_repeated_failed_logins__throttled(gateway):
    login = unique("target")
    await gateway.post("/register", json={"login": login, "password": "right password"})
    for _ in range(10):
        await gateway.post("/login", json={"login": login, "password": "wrong password"})
    blocked = await gateway.post("/login", json={"login": login, "password": "right password"})
    assert_error(blocked, 429, "too_many_requests")
    assert int(blocked.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "body",
    [
        {"login": "ab", "password": "long enough"},
        {"login": "has space", "password": "long enough"},
        {"login": "ok-login", "password": "short"},
        {"login": "ok-login"},
        {"login": "ok-login", "password": "long enough", "extra": 1},
        ["not", "an", "object"],
    ],
)
async def test_register_rules__422(gateway, body):
    assert_error(await gateway.post("/register", json=body), 422, "invalid_input")


async def test_concurrent_duplicate_registration__exactly_one_wins(gateway):
    credentials = {"login": unique("race"), "password": "correct horse battery"}
    responses = await asyncio.gather(
        *(gateway.post("/register", json=credentials) for _ in range(8))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 7


async def test_password_not_stored_in_clear(gateway, redis, settings):
    login = unique("clear")
    await gateway.post("/register", json={"login": login, "password": "visible password"})
    stored = await redis.hgetall(f"{settings.redis_prefix}:user:{login}")
    assert b"visible password" not in b"".join(stored.values())
    assert stored[b"password_hash"].startswith(b"$argon2id$")


def _token(settings, **overrides):
    now = int(time.time())
    claims = {"sub": "someone", "iat": now, "exp": now + 60}
    key = overrides.pop("key", settings.jwt_secret.get_secret_value())
    algorithm = overrides.pop("algorithm", "HS256")
    claims.update(overrides)
    return jwt.encode(claims, None if algorithm == "none" else key, algorithm=algorithm)


@pytest.mark.parametrize(
    "make",
    [
        lambda s: _token(s, exp=int(time.time()) - 10),
        lambda s: _token(s, key="another-secret-of-sufficient-length-000000"),
        lambda s: _token(s, algorithm="HS512"),
        lambda s: _token(s, algorithm="none"),
        lambda s: "garbage",
    ],
    ids=["expired", "forged", "wrong-algorithm", "alg-none", "garbage"],
)
async def test_bad_tokens__401(gateway, settings, make):
    response = await gateway.get("/models", headers={"Authorization": f"Bearer {make(settings)}"})
    assert_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/models"), ("POST", "/models/x/tasks"), ("GET", "/models/x/result?task_id=1")],
)
async def test_model_routes_need_a_token(gateway, method, path):
    assert_error(await gateway.request(method, path), 401, "unauthorized")


async def test_other_users_result__403_unknown__404(gateway, user, deploy):
    alice, bob = await user(), await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    task_id = (
        await gateway.post(f"/models/{name}/tasks", json={"text": "x"}, headers=alice)
    ).json()["task_id"]
    await model.drain()
    assert (
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=alice)
    ).status_code == 200
    assert_error(
        await gateway.get(f"/models/{name}/result", params={"task_id": task_id}, headers=bob),
        403,
        "forbidden",
    )
    assert_error(
        await gateway.get(
            f"/models/{name}/result", params={"task_id": unique("none")}, headers=bob
        ),
        404,
        "task_not_found",
    )


async def test_oversized_body__413_declared_and_streamed(gateway, user, deploy, settings):
    headers = await user()
    model = await deploy(Echo())
    name = model.consumer.spec.name
    big = b'{"text": "' + b"x" * (settings.max_body_bytes + 10) + b'"}'
    declared = await gateway.post(
        f"/models/{name}/tasks",
        content=big,
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_error(declared, 413, "payload_too_large")

    async def chunks():
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = await gateway.post(
        f"/models/{name}/tasks",
        content=chunks(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert_error(streamed, 413, "payload_too_large")
    assert await model.queue_length(model.names.work) == 0


async def test_unknown_route_and_method__json_errors(gateway):
    assert_error(await gateway.get("/nope"), 404, "not_found")
    assert_error(await gateway.delete("/models"), 405, "method_not_allowed")


async def test_task_ids_are_uuid4(gateway, user, deploy):
    import uuid

    headers = await user()
    model = await deploy(Echo())
    response = await gateway.post(
        f"/models/{model.consumer.spec.name}/tasks", json={"text": "x"}, headers=headers
    )
    assert uuid.UUID(response.json()["task_id"]).version == 4
