"""The caller's own account: who they are, and the secret their webhooks are signed with."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import CurrentUser, ServicesDep
from app.api.routing import BoundedJsonRoute
from app.api.schemas import AccountOut, WebhookSecretOut, error_responses
from app.core.errors import Unauthorized
from app.sharing.limits import UserLimits
from app.sharing.usage import Usage, read_usage

router = APIRouter(prefix="/account", tags=["account"], route_class=BoundedJsonRoute)


@router.get("", response_model=AccountOut, responses=error_responses(401, 503))
async def account(user: CurrentUser, services: ServicesDep) -> AccountOut:
    """Your login and role, your limits, and what you use of them now."""
    role = await services.accounts.role(user)
    limits = await services.limits.effective(user)
    return AccountOut(
        login=user, role=role or "user", limits=limits, usage=await usage_of(services, user, limits)
    )


async def usage_of(services: ServicesDep, login: str, limits: UserLimits) -> Usage:
    models = [model.view.name for model in await services.catalog.live()]
    return await read_usage(services.store, services.leases, login, models, limits)


@router.get("/webhook-secret", response_model=WebhookSecretOut, responses=error_responses(401, 503))
async def webhook_secret(user: CurrentUser, services: ServicesDep) -> WebhookSecretOut:
    """The secret your webhook deliveries are signed with (Standard Webhooks), made on first
    use; during the grace period after a rotation, the previous one too."""
    return await _secrets(user, services)


@router.post(
    "/webhook-secret/rotate", response_model=WebhookSecretOut, responses=error_responses(401, 503)
)
async def rotate_webhook_secret(user: CurrentUser, services: ServicesDep) -> WebhookSecretOut:
    """Make a new webhook secret. Deliveries are signed with both the new and the previous one
    for `APP_WEBHOOK_SECRET_GRACE_S`, so a receiver can switch without missing any."""
    if await services.users.rotate_webhook_secret(user) is None:
        raise Unauthorized("the token's account does not exist")
    return await _secrets(user, services)


async def _secrets(user: str, services: ServicesDep) -> WebhookSecretOut:
    found = await services.users.webhook_secrets(
        user, grace_s=services.settings.webhook_secret_grace_s
    )
    if not found:
        raise Unauthorized("the token's account does not exist")
    return WebhookSecretOut(secret=found[0], previous=found[1] if len(found) > 1 else None)
