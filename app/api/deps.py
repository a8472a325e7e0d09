"""Dependencies of the routes, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from app.core.errors import Unauthorized
from app.core.security import login_from_token
from app.services import Services

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
    """The login of the bearer token's owner."""
    if not token:
        raise Unauthorized("missing bearer token")
    return login_from_token(token, services.settings)


CurrentUser = Annotated[str, Depends(current_user)]
