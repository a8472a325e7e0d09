"""Sign-up and login."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, status
from pydantic import ValidationError

from app.api.deps import ServicesDep
from app.api.schemas import Credentials, TokenOut, UserOut, error_responses
from app.core.errors import Conflict, InvalidInput, TooManyRequests, Unauthorized
from app.core.security import create_access_token, hash_password, verify_password

router = APIRouter(tags=["users"])

# Failed logins for one login within the lockout window before further tries get 429.
MAX_FAILED_LOGINS = 10
BAD_CREDENTIALS = "wrong login or password"


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(400, 409, 422, 503),
)
async def register(credentials: Credentials, services: ServicesDep) -> UserOut:
    """Create a user account; the login must be unused."""
    password_hash = await asyncio.to_thread(hash_password, credentials.password)
    if not await services.users.create(credentials.login, password_hash):
        raise Conflict(f"login {credentials.login!r} is taken")
    return UserOut(login=credentials.login)


# Rules that only say whether such an account could exist: breaking them at login is a 401,
# like a wrong password, not a hint about the rules.
_ACCOUNT_RULES = {"string_too_short", "string_too_long", "string_pattern_mismatch"}


async def _read_credentials(request: Request) -> Credentials:
    """Credentials from a JSON body or an OAuth2 password form (Swagger's Authorize button)."""
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/x-www-form-urlencoded") or (
            content_type.startswith("multipart/form-data")
        ):
            form = await request.form()
            data: object = {"login": form.get("username"), "password": form.get("password")}
        else:
            data = await request.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "body must be JSON {login, password} or an OAuth2 password form"
        ) from exc
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object {login, password}")
    try:
        return Credentials.model_validate(data)
    except ValidationError as exc:
        if {error["type"] for error in exc.errors()} <= _ACCOUNT_RULES:
            raise Unauthorized(BAD_CREDENTIALS) from exc
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InvalidInput(problems) from exc


@router.post(
    "/login",
    response_model=TokenOut,
    responses=error_responses(400, 401, 422, 429, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Credentials"}},
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["username", "password"],
                        "properties": {
                            "username": {"type": "string"},
                            "password": {"type": "string", "format": "password"},
                        },
                    }
                },
            },
        }
    },
)
async def login(request: Request, services: ServicesDep) -> TokenOut:
    """Exchange a login and password for a bearer token."""
    credentials = await _read_credentials(request)
    if await services.users.failures(credentials.login) >= MAX_FAILED_LOGINS:
        raise TooManyRequests(
            "too many failed logins; try again later",
            headers={"Retry-After": str(services.users.lockout_window_s)},
        )
    password_hash = await services.users.password_hash(credentials.login)
    ok = await asyncio.to_thread(verify_password, credentials.password, password_hash)
    if not ok:
        await services.users.record_failure(credentials.login)
        raise Unauthorized(BAD_CREDENTIALS)
    await services.users.clear_failures(credentials.login)
    token = create_access_token(credentials.login, services.settings)
    return TokenOut(access_token=token.token, expires_in=token.expires_in)
