"""Passwords (argon2id) and access tokens (JWT, HS256).

Hashing is deliberately slow; callers on an event loop run it in a thread.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.errors import Unauthorized
from app.core.settings import DEFAULT_JWT_SECRET, Settings

logger = logging.getLogger(__name__)

JWT_ALGORITHM = "HS256"
_hasher = PasswordHasher()
# Verified against when a login does not exist, so both failures take the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    """An argon2id hash (salted, parameters embedded) of `password`."""
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """True when `password` matches; runs a full verification even for an unknown user."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


def _secret(settings: Settings) -> str:
    secret = settings.jwt_secret.get_secret_value()
    if secret == DEFAULT_JWT_SECRET:
        logger.warning("signing tokens with the development secret; set APP_JWT_SECRET")
    return secret


def create_access_token(login: str, settings: Settings) -> AccessToken:
    """A signed token for `login`, valid for `settings.jwt_ttl_s` seconds."""
    issued = int(time.time())
    claims = {"sub": login, "iat": issued, "exp": issued + settings.jwt_ttl_s}
    return AccessToken(
        token=jwt.encode(claims, _secret(settings), algorithm=JWT_ALGORITHM),
        expires_in=settings.jwt_ttl_s,
    )


def login_from_token(token: str, settings: Settings) -> str:
    """The login a valid token was issued to.

    Only HS256 is accepted (so `alg: none` and key-confusion tokens fail), and `sub`, `iat`
    and `exp` are required.

    Raises:
        Unauthorized: the token is malformed, forged, expired or lacks a claim.
    """
    try:
        claims = jwt.decode(
            token,
            _secret(settings),
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "iat", "exp"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token expired") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise Unauthorized(f"token algorithm not allowed (only {JWT_ALGORITHM})") from exc
    except jwt.InvalidSignatureError as exc:
        raise Unauthorized("token signature does not verify") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token lacks the {exc.claim!r} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("malformed token") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise Unauthorized("invalid token")
    return subject
