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
    claims = {"sub": overrides.pop("sub", "someone"), "iat": now, "exp": now + 60}
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


async def test_a_token_counts_only_while_its_account_exists(gateway, settings, user, services):
    # Signed with the right key, for a login nobody registered.
    ghost = _token(settings, sub=unique("ghost"))
    response = await gateway.get("/models", headers={"Authorization": f"Bearer {ghost}"})
    assert_error(response, 401, "unauthorized")
    assert "does not exist" in response.json()["detail"]
    login = unique("real")
    headers = await user(login)
    assert (await gateway.get("/account", headers=headers)).status_code == 200
    await services.users.redis.delete(f"{settings.redis_prefix}:user:{login}")
    services.accounts.forget(login)  # a gateway notices within APP_ACCOUNT_CACHE_S anyway
    assert_error(await gateway.get("/account", headers=headers), 401, "unauthorized")


async def test_the_old_built_in_secret_signs_nothing(gateway, user, settings):
    login = unique("victim")
    await user(login)
    forged = _token(settings, sub=login, key="change-me")
    response = await gateway.get("/tasks", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "unauthorized")


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


async def test_without_a_configured_secret__one_is_made_and_shared_by_every_gateway(
    settings, redis
):
    import httpx

    from app.main import create_app
    from tests.utils.registry import LocalRegistry

    unset = settings.model_copy(update={"jwt_secret": None})
    credentials = {"login": unique("shared"), "password": "long enough password"}

    async def with_gateway(use):
        app = create_app(settings=unset, registry=LocalRegistry())
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
                return await use(client)

    async def sign_up(client):
        assert (await client.post("/register", json=credentials)).status_code == 201
        return (await client.post("/login", json=credentials)).json()["access_token"]

    token = await with_gateway(sign_up)
    stored = await redis.get(f"{settings.redis_prefix}:secret:jwt")
    assert stored and len(stored) >= 32

    async def account(client):
        return await client.get("/account", headers={"Authorization": f"Bearer {token}"})

    # Another replica, and the same one restarted: both find the key the first one made.
    for _ in range(2):
        assert (await with_gateway(account)).status_code == 200
    assert await redis.get(f"{settings.redis_prefix}:secret:jwt") == stored


def _client_from(app, address):
    """An HTTP client whose requests come from `address` (what per-address limits count)."""
    import httpx

    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway")


async def test_parallel_bad_logins_are_each_counted_before_any_password_is_checked(
    gateway, gateway_app, services, settings
):
    login = unique("target")
    await gateway.post("/register", json={"login": login, "password": "right password"})
    async with _client_from(gateway_app, "10.9.9.9") as stranger:
        answers = await asyncio.gather(
            *(
                stranger.post("/login", json={"login": login, "password": f"guess {i:04d}"})
                for i in range(40)
            )
        )
    codes = sorted(a.status_code for a in answers)
    # Only the first `login_failures_per_login` reach the password check; all 40 count.
    allowed = settings.login_failures_per_login
    assert codes == [401] * allowed + [429] * (40 - allowed)
    assert await services.logins.attempts(login, "10.9.9.9") == 40
    refused = next(a for a in answers if a.status_code == 429)
    assert_error(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_strangers_guesses_never_lock_the_owner_out(gateway_app, gateway, settings):
    login = unique("owner")
    credentials = {"login": login, "password": "right password"}
    await gateway.post("/register", json=credentials)
    async with _client_from(gateway_app, "10.6.6.6") as stranger:
        for _ in range(settings.login_failures_per_login * 2):
            await stranger.post("/login", json={"login": login, "password": "wrong password"})
        blocked = await stranger.post("/login", json=credentials)
        assert_error(blocked, 429, "too_many_requests")
    async with _client_from(gateway_app, "10.1.1.1") as owner:
        assert (await owner.post("/login", json=credentials)).status_code == 200


async def test_each_early_try_doubles_the_wait(gateway_app, gateway, settings):
    login = unique("slow")
    await gateway.post("/register", json={"login": login, "password": "right password"})
    waits = []
    async with _client_from(gateway_app, "10.7.7.7") as guesser:
        for _ in range(settings.login_failures_per_login + 4):
            answer = await guesser.post("/login", json={"login": login, "password": "nope nope"})
            if answer.status_code == 429:
                waits.append(int(answer.headers["Retry-After"]))
    assert waits == sorted(waits) and waits[-1] >= 8, waits


async def test_sign_ups_are_limited_per_client_address(gateway_app, services):
    services.settings.register_burst = 3
    async with _client_from(gateway_app, "10.3.3.3") as crowd:
        codes = [
            (
                await crowd.post(
                    "/register", json={"login": unique("bulk"), "password": "long enough pw"}
                )
            ).status_code
            for _ in range(5)
        ]
        assert codes == [201, 201, 201, 429, 429]
        refused = await crowd.post(
            "/register", json={"login": unique("bulk"), "password": "long enough pw"}
        )
        assert_error(refused, 429, "too_many_requests")
        assert int(refused.headers["Retry-After"]) >= 1
    async with _client_from(gateway_app, "10.4.4.4") as elsewhere:
        assert (
            await elsewhere.post(
                "/register", json={"login": unique("bulk"), "password": "long enough pw"}
            )
        ).status_code == 201


async def test_password_hashing_past_its_bound__503_with_retry_after(gateway, services):
    from app.accounts.security import PasswordHashing

    services.passwords = PasswordHashing(workers=1, queue=1)
    answers = await asyncio.gather(
        *(
            gateway.post("/register", json={"login": unique("rush"), "password": "long enough pw"})
            for _ in range(12)
        )
    )
    codes = [a.status_code for a in answers]
    assert codes.count(201) >= 2 and set(codes) == {201, 503}, codes
    busy = next(a for a in answers if a.status_code == 503)
    assert_error(busy, 503, "busy")
    assert busy.headers["Retry-After"] == "1"


async def test_a_huge_login_body_is_refused_before_it_is_read(gateway):
    pulled = 0

    async def huge():
        nonlocal pulled
        for _ in range(300 * 16):  # 300 MiB in 64 KiB chunks
            pulled += 1
            yield b"x" * 65536

    answer = await gateway.post(
        "/login",
        content=huge(),
        headers={"Content-Type": "application/json", "Content-Length": str(300 << 20)},
    )
    assert_error(answer, 413, "payload_too_large")
    assert pulled <= 1


async def test_every_small_route_caps_its_body(gateway, user):
    headers = await user()
    streamed_over = b"{" + b" " * (80 * 1024) + b"}"
    for method, path in (("POST", "/register"), ("POST", "/account/webhook-secret/rotate")):
        answer = await gateway.request(
            method, path, content=streamed_over, headers={**headers, "Content-Type": "text/plain"}
        )
        assert_error(answer, 413, "payload_too_large")


def _nested(depth):
    return ("[" * depth + "]" * depth).encode()


@pytest.mark.parametrize("depth", [70, 5000])
async def test_deeply_nested_json_is_a_400_everywhere(gateway, user, deploy, depth):
    headers = {**(await user()), "Content-Type": "application/json"}
    name = (await deploy(Echo())).consumer.spec.name
    nested_object = ('{"text": ' + "[" * depth + "]" * depth + "}").encode()
    for path, body in (
        ("/login", _nested(depth)),
        ("/register", _nested(depth)),
        (f"/models/{name}/tasks", nested_object),
        (f"/models/{name}/tasks", _nested(depth)),
        (f"/models/{name}/batches", _nested(depth)),
        (f"/models/{name}/infer", nested_object),
        (f"/v2/models/{name}/infer", nested_object),
    ):
        answer = await gateway.post(path, content=body, headers=headers)
        assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
        assert "Traceback" not in answer.text
