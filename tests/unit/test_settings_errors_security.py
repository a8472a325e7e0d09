from __future__ import annotations

import time

import jwt
import pytest

from app.core.errors import Unauthorized
from app.core.security import (
    create_access_token,
    hash_password,
    login_from_token,
    verify_password,
)
from app.core.settings import Settings

SECRET = "unit-test-secret-0123456789abcdef0123456789"
WEBHOOK_SECRET = "unit-test-webhook-secret-0123456789abcdef"


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("APP_PREFETCH_COUNT", "7")
    monkeypatch.setenv("APP_REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("APP_WEBHOOK_ALLOWED_HOSTS", "hooks.example.com, *.example.org")
    settings = Settings()
    assert settings.prefetch_count == 7
    assert str(settings.redis_url) == "redis://example:6380/2"
    assert settings.webhook_allowed_hosts == ["hooks.example.com", "*.example.org"]


def test_settings_allowed_hosts_as_json_list(monkeypatch):
    monkeypatch.setenv("APP_WEBHOOK_ALLOWED_HOSTS", '["127.0.0.1", "*"]')
    assert Settings().webhook_allowed_hosts == ["127.0.0.1", "*"]


@pytest.mark.parametrize(
    ("jwt_secret", "webhook_secret", "named"),
    [
        (None, WEBHOOK_SECRET, "APP_JWT_SECRET"),
        ("short-secret-of-31-bytes-000000", WEBHOOK_SECRET, "APP_JWT_SECRET"),
        (SECRET, None, "APP_WEBHOOK_SECRET"),
        (SECRET, "too short", "APP_WEBHOOK_SECRET"),
    ],
)
def test_settings_refuse_weak_secrets_in_prod(jwt_secret, webhook_secret, named):
    values = {"environment": "prod"}
    if jwt_secret is not None:
        values["jwt_secret"] = jwt_secret
    if webhook_secret is not None:
        values["webhook_secret"] = webhook_secret
    with pytest.raises(ValueError, match=named):
        Settings(**values)


def test_settings_accept_strong_secrets_in_prod_and_anything_in_dev():
    assert Settings(environment="prod", jwt_secret=SECRET, webhook_secret=WEBHOOK_SECRET)
    assert Settings(environment="dev", jwt_secret="x").environment == "dev"


def test_settings_reject_bad_values():
    with pytest.raises(ValueError):
        Settings(prefetch_count=0)
    with pytest.raises(ValueError):
        Settings(amqp_url="http://not-amqp")


def test_password_hash_is_salted_and_verifies():
    first, second = hash_password("pw-123456"), hash_password("pw-123456")
    assert first != second and "pw-123456" not in first
    assert verify_password("pw-123456", first)
    assert not verify_password("wrong", first)
    assert not verify_password("pw-123456", None)


def test_token_roundtrip():
    settings = Settings(jwt_secret=SECRET)
    token = create_access_token("ada", settings)
    assert token.expires_in == settings.jwt_ttl_s
    assert login_from_token(token.token, settings) == "ada"


def _claims(**overrides):
    """Valid claims, issued now, expiring in a minute (built inside each test, not at import)."""
    issued = int(time.time())
    claims = {"sub": "ada", "iat": issued, "exp": issued + 60}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _forge(claims, key=SECRET, algorithm="HS256"):
    return jwt.encode(claims, None if algorithm == "none" else key, algorithm=algorithm)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: _forge(_claims(iat=0, exp=1)), "token expired"),
        (lambda: _forge(_claims(), key="x" * 40), "signature does not verify"),
        (lambda: _forge(_claims(), key=SECRET * 2, algorithm="HS512"), "algorithm not allowed"),
        (lambda: _forge(_claims(), algorithm="none"), "algorithm not allowed"),
        (lambda: _forge(_claims(iat=None)), "lacks the 'iat' claim"),
        (lambda: _forge(_claims(sub=None)), "lacks the 'sub' claim"),
        (lambda: _forge(_claims(exp=None)), "lacks the 'exp' claim"),
        (lambda: "not.a.token", "malformed token"),
        (lambda: "", "malformed token"),
    ],
    ids=[
        "expired",
        "wrong-key",
        "hs512",
        "alg-none",
        "no-iat",
        "no-sub",
        "no-exp",
        "garbage",
        "empty",
    ],
)
def test_bad_tokens__unauthorized_for_their_own_reason(make, reason):
    token = make()
    with pytest.raises(Unauthorized, match=reason):
        login_from_token(token, Settings(jwt_secret=SECRET))
