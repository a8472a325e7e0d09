"""Passwords (argon2id) and access tokens (JWT, HS256).

Hashing is deliberately slow and memory-hungry (64 MiB each): `PasswordHashing` runs it on a
few threads of its own with a bounded queue, so a flood of sign-ups or logins gets 503s with
Retry-After instead of starving the gateway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.core.errors import Unauthorized, Unavailable

T = TypeVar("T")

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


class HashingBusy(Unavailable):
    """Every password-hashing thread is busy and the queue for them is full."""

    code = "busy"


class PasswordHashing:
    """Hashes and verifies passwords on `workers` threads; at most `queue` more wait.

    Args:
        workers: hashes computed at once (each holds 64 MiB while it runs).
        queue: calls that may wait for a thread; past that, `HashingBusy`.
    """

    def __init__(self, *, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._capacity = workers + queue
        self._admitted = 0

    async def hash(self, password: str) -> str:
        return await self._run(hash_password, password)

    async def verify(self, password: str, password_hash: str | None) -> bool:
        return await self._run(verify_password, password, password_hash)

    async def _run(self, function: Callable[..., T], *args: object) -> T:
        if self._admitted >= self._capacity:
            raise HashingBusy("too many sign-ups and logins at once; try again", retry_after_s=1)
        self._admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self._admitted -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int


def create_access_token(login: str, key: str, ttl_s: int) -> AccessToken:
    """A token for `login` signed with `key`, valid for `ttl_s` seconds."""
    issued = int(time.time())
    claims = {"sub": login, "iat": issued, "exp": issued + ttl_s}
    return AccessToken(token=jwt.encode(claims, key, algorithm=JWT_ALGORITHM), expires_in=ttl_s)


class VerifiedTokens:
    """Tokens this process verified, by their text, until they expire: a client sends the same
    token with every request, and checking it again (HMAC, JSON, claims) is pure waste.

    Only tokens that verified are kept, so a forged or expired one is checked every time, and
    each with the key it verified under, so a rotated key is never bypassed.
    """

    MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._logins: dict[str, tuple[str, int, str]] = {}

    def login(self, token: str, key: str) -> str:
        """As `login_from_token`, from memory when this token verified before with `key`."""
        known = self._logins.get(token)
        if known is not None and known[1] > time.time() and known[2] == key:
            return known[0]
        login, expires = _verified(token, key)
        if len(self._logins) >= self.MAX_ENTRIES:
            self._logins.clear()
        self._logins[token] = (login, expires, key)
        return login


def login_from_token(token: str, key: str) -> str:
    """The login a valid token was issued to.

    Only HS256 is accepted (so `alg: none` and key-confusion tokens fail), and `sub`, `iat`
    and `exp` are required.

    Raises:
        Unauthorized: the token is malformed, forged, expired or lacks a claim.
    """
    return _verified(token, key)[0]


def _verified(token: str, key: str) -> tuple[str, int]:
    """The token's login and expiry (Unix seconds), once its signature and claims check out."""
    try:
        claims = jwt.decode(
            token,
            key,
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
    return subject, int(claims["exp"])
