from __future__ import annotations

import time

import jwt
import pytest

from app.accounts.security import (
    VerifiedTokens,
    create_access_token,
    hash_password,
    login_from_token,
    verify_password,
)
from app.core.errors import Unauthorized
from app.core.settings import Settings

SECRET = "unit-test-secret-0123456789abcdef0123456789"


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


METRICS_TOKEN = "unit-test-metrics-token-0123456789abcdef"


@pytest.mark.parametrize("environment", ["dev", "test", "prod"])
def test_settings_refuse_short_secrets_in_every_environment(environment):
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(environment=environment, jwt_secret="short-secret-of-31-bytes-000000")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        Settings(environment=environment, metrics_token="too short")


def test_settings_need_no_jwt_secret__the_platform_makes_one():
    assert Settings().jwt_secret is None
    assert Settings(environment="prod", metrics_token=METRICS_TOKEN).jwt_secret is None


def test_settings_in_prod_need_a_metrics_token():
    with pytest.raises(ValueError, match="APP_METRICS_TOKEN"):
        Settings(environment="prod")


def test_settings_refuse_the_admin_list(monkeypatch):
    monkeypatch.setenv("APP_ADMIN_LOGINS", "ada")
    with pytest.raises(ValueError, match="app.admin promote"):
        Settings()


def test_settings_callback_hosts_default_to_public_outside_prod_and_to_none_in_prod():
    assert Settings().callback_hosts == ["*"]
    assert Settings(environment="prod", metrics_token=METRICS_TOKEN).callback_hosts == []
    assert Settings(webhook_allowed_hosts=[]).callback_hosts == []


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
    token = create_access_token("ada", SECRET, 3600)
    assert token.expires_in == 3600
    assert login_from_token(token.token, SECRET) == "ada"


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
        login_from_token(token, SECRET)


def test_verified_tokens__remembered_for_their_key_and_lifetime_only():
    tokens = VerifiedTokens()
    expires = int(time.time()) + 1
    good = _forge(_claims(exp=expires))
    assert tokens.login(good, SECRET) == "ada"
    # A rotated key checks the token again instead of answering from memory.
    with pytest.raises(Unauthorized, match="signature does not verify"):
        tokens.login(good, "y" * 40)
    assert tokens.login(good, SECRET) == "ada"
    # Past its expiry, the remembered token is checked again, and refused.
    while time.time() <= expires:
        time.sleep(0.05)
    with pytest.raises(Unauthorized, match="token expired"):
        tokens.login(good, SECRET)
    # A forged token is never remembered, so it is refused every time.
    forged = _forge(_claims(), key="x" * 40)
    for _ in range(2):
        with pytest.raises(Unauthorized, match="signature does not verify"):
            tokens.login(forged, SECRET)
