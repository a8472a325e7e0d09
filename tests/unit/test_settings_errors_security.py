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


def test_settings_from_environment(monkeypatch):
    monkeypatch.setenv("APP_PREFETCH_COUNT", "7")
    monkeypatch.setenv("APP_REDIS_URL", "redis://example:6380/2")
    settings = Settings()
    assert settings.prefetch_count == 7
    assert str(settings.redis_url) == "redis://example:6380/2"


def test_settings_refuse_default_secret_in_prod():
    with pytest.raises(ValueError, match="APP_JWT_SECRET"):
        Settings(environment="prod")
    assert Settings(environment="prod", jwt_secret=SECRET).environment == "prod"


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


def _forge(claims, key=SECRET, algorithm="HS256"):
    return jwt.encode(claims, None if algorithm == "none" else key, algorithm=algorithm)


@pytest.mark.parametrize(
    "token",
    [
        _forge({"sub": "ada", "iat": 0, "exp": 1}),  # expired
        _forge({"sub": "ada", "iat": int(time.time()), "exp": int(time.time()) + 60}, key="x" * 40),
        _forge(
            {"sub": "ada", "iat": int(time.time()), "exp": int(time.time()) + 60}, algorithm="HS512"
        ),
        _forge(
            {"sub": "ada", "iat": int(time.time()), "exp": int(time.time()) + 60}, algorithm="none"
        ),
        _forge({"sub": "ada", "exp": int(time.time()) + 60}),  # no iat
        _forge({"iat": int(time.time()), "exp": int(time.time()) + 60}),  # no sub
        "not.a.token",
        "",
    ],
)
def test_bad_tokens__unauthorized(token):
    with pytest.raises(Unauthorized):
        login_from_token(token, Settings(jwt_secret=SECRET))
