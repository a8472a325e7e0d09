"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from fastapi.security import OAuth2PasswordBearer

from app.accounts.users import ROLE_ADMIN
from app.core.errors import CallbackNotAllowed, Forbidden, InvalidInput, Unauthorized
from app.services import Services
from app.sharing.fair_share import Priority
from app.sharing.headers import rate_limited
from app.sharing.leases import OPEN_STREAMS, LeaseRefused
from app.tasks.submission import SubmitOptions
from app.webhooks.targets import (
    CALLBACK_URL_PATTERN,
    CallbackInvalid,
    CallbackRefused,
    check_callback_url,
)

# auto_error=False: a missing token becomes our own 401 with the common error shape.
_bearer = OAuth2PasswordBearer(tokenUrl="login", auto_error=False)


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in a thread
# pool, a thread hop per request that showed up as the gateway's largest cost in a profile.


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def current_user(
    services: ServicesDep, token: Annotated[str | None, Depends(_bearer)]
) -> str:
    """The login of the bearer token's owner, whose account must still exist."""
    return await login_of(services, token)


async def login_of(services: Services, token: str | None) -> str:
    """The login a bearer token was issued to (REST and gRPC check tokens alike).

    Raises:
        Unauthorized: no token, a bad one, or its account is gone.
    """
    if not token:
        raise Unauthorized("missing bearer token")
    login = services.tokens.login(token, await services.signing_key.get())
    if await services.accounts.role(login) is None:
        raise Unauthorized("the token's account does not exist")
    return login


CurrentUser = Annotated[str, Depends(current_user)]


async def client_address(request: Request) -> str:
    """The address the request came from (what per-address limits count)."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


async def current_admin(user: CurrentUser, services: ServicesDep) -> str:
    """The login of the bearer token's owner, who must be an admin (promoted with
    `python -m app.admin promote LOGIN`)."""
    if await services.accounts.role(user) != ROLE_ADMIN:
        raise Forbidden("this needs an admin")
    return user


AdminUser = Annotated[str, Depends(current_admin)]


async def take_stream_lease(services: Services, user: str) -> str:
    """A lease on one of the user's open streams (an event stream or a long-poll); give it
    back when the stream ends.

    Raises:
        TooManyRequests: the user holds their limit of open streams (over every replica).
    """
    limit = services.settings.quota_open_streams
    try:
        return await services.leases.take(OPEN_STREAMS, user, default_limit=limit)
    except LeaseRefused as refused:
        raise rate_limited(
            f"you have {refused.held} event streams and long-polls open, your limit; close one "
            "or wait for it to end",
            policy="streams",
            quota=refused.limit,
            remaining=0,
            retry_after_s=STREAM_RETRY_AFTER_S,
        ) from None


# When a client at its limit of open streams may try again (one of them may have ended).
STREAM_RETRY_AFTER_S = 5.0

# The longest deadline a submit may carry (the queue keeps no task longer than its result).
MAX_DEADLINE_S = 7 * 24 * 3600.0


def callback_query(description: str) -> Any:
    """The `callback_url` query parameter of a route that delivers a webhook."""
    return Query(max_length=2048, pattern=CALLBACK_URL_PATTERN, description=description)


def checked_callback(services: Services, callback_url: str) -> str:
    """A callback URL the platform may deliver to.

    Raises:
        InvalidInput: not an http(s) URL it can use.
        CallbackNotAllowed: its host is off the webhook allow-list.
    """
    try:
        check_callback_url(callback_url, services.settings.callback_hosts)
    except CallbackInvalid as exc:
        raise InvalidInput(str(exc)) from exc
    except CallbackRefused as exc:
        raise CallbackNotAllowed(str(exc)) from exc
    return callback_url


async def submit_options(
    services: ServicesDep,
    callback_url: Annotated[
        str | None,
        callback_query(
            "POST the task's final document here (http or https, signed with your own "
            "secret as Standard Webhooks says: GET /account/webhook-secret). A host off the "
            "webhook allow-list is a 403."
        ),
    ] = None,
    deadline_s: Annotated[
        float | None,
        Query(
            gt=0,
            le=MAX_DEADLINE_S,
            description="Seconds from now by which a replica must have started the task; "
            "otherwise it ends `expired` without running.",
        ),
    ] = None,
    priority: Annotated[
        Priority,
        Query(
            description="Order among your own queued tasks of this model: high ones run "
            "first, low ones last (up to the highest an admin lets you use; 403 past it).",
        ),
    ] = Priority.NORMAL,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Repeat a submit with the same key to get the first submit's task "
            "ids instead of queuing again (kept as long as results).",
        ),
    ] = None,
) -> SubmitOptions:
    """What a submit may carry besides its body."""
    if callback_url is not None:
        checked_callback(services, callback_url)
    return SubmitOptions(
        callback_url=callback_url,
        deadline_s=deadline_s,
        idempotency_key=idempotency_key,
        priority=priority,
    )


SubmitOptionsDep = Annotated[SubmitOptions, Depends(submit_options)]
