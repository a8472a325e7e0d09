"""Sign-up and login."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from pydantic import ValidationError

from app.accounts.login_throttle import retry_after
from app.accounts.security import create_access_token
from app.api.deps import ClientAddress, ServicesDep
from app.api.routing import bounded_route
from app.api.schemas import Credentials, TokenOut, UserOut, error_responses
from app.core.errors import BadRequest, Conflict, InvalidInput, TooManyRequests, Unauthorized
from protos.codec import DecodeFailed, load_json

BAD_CREDENTIALS = "wrong login or password"
# The largest body /register or /login reads (a login and a password are far smaller).
AUTH_BODY_CAP_BYTES = 16 * 1024

router = APIRouter(tags=["users"], route_class=bounded_route(cap=AUTH_BODY_CAP_BYTES))


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=error_responses(400, 409, 413, 422, 429, 503),
)
async def register(
    credentials: Credentials, services: ServicesDep, address: ClientAddress
) -> UserOut:
    """Create a user account; the login must be unused. Sign-ups are limited per client
    address (429 with Retry-After)."""
    settings = services.settings
    taken = await services.address_buckets.take(
        f"register:{address}",
        rate=settings.register_per_minute / 60,
        burst=settings.register_burst,
    )
    if not taken.allowed:
        raise TooManyRequests(
            "too many sign-ups from your address; try again later",
            headers={"Retry-After": str(taken.retry_after_s)},
        )
    password_hash = await services.passwords.hash(credentials.password)
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
            data = load_json(await request.body())
    except DecodeFailed as exc:
        raise BadRequest(
            f"body must be JSON {{login, password}} or an OAuth2 password form: {exc}"
        ) from exc
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
    responses=error_responses(400, 401, 413, 422, 429, 503),
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
async def login(request: Request, services: ServicesDep, address: ClientAddress) -> TokenOut:
    """Exchange a login and password for a bearer token. Failed attempts slow further ones
    from the same address down (429 with Retry-After), doubling each time."""
    credentials = await _read_credentials(request)
    # Counted before the password is checked: parallel guesses are each counted.
    wait_s = await services.logins.attempt(credentials.login, address)
    if wait_s > 0:
        raise TooManyRequests(
            "too many failed logins from your address; try again later",
            headers={"Retry-After": str(retry_after(wait_s))},
        )
    password_hash = await services.users.password_hash(credentials.login)
    if not await services.passwords.verify(credentials.password, password_hash):
        raise Unauthorized(BAD_CREDENTIALS)
    await services.logins.succeeded(credentials.login, address)
    token = create_access_token(
        credentials.login, await services.signing_key.get(), services.settings.jwt_ttl_s
    )
    return TokenOut(access_token=token.token, expires_in=token.expires_in)
