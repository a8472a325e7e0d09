"""Admin routes: disable and enable a model, its dead letters (look, replay, purge), users'
limits and usage, and the platform's status. Every action is logged with the admin who made
it."""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated

import psutil
from fastapi import APIRouter, Body, Path, Query

from app.api.deps import AdminUser, ServicesDep
from app.api.routes.account import usage_of
from app.api.routes.models import ModelName, disabled_out
from app.api.routing import BoundedJsonRoute
from app.api.schemas import (
    AdminUserOut,
    DeadLetterOut,
    DeadLettersOut,
    DisableIn,
    NodeOut,
    PurgedOut,
    ReplayedOut,
    ReplayIn,
    StatusOut,
    SwitchOut,
    UserListOut,
    error_responses,
)
from app.core.errors import UserNotFound
from app.sharing.limits import LimitOverrides

router = APIRouter(prefix="/admin", tags=["admin"], route_class=BoundedJsonRoute)
status_router = APIRouter(tags=["admin"], route_class=BoundedJsonRoute)

# Who did what: one line per admin action, on a logger of its own so it can be routed apart.
audit = logging.getLogger("app.audit")

MAX_LISTED = 1000
Login = Annotated[str, Path(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")]


@router.post(
    "/models/{name}/disable",
    response_model=SwitchOut,
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def disable_model(
    name: ModelName,
    admin: AdminUser,
    services: ServicesDep,
    body: Annotated[DisableIn | None, Body()] = None,
) -> SwitchOut:
    """Stop new work for a model: submits and calls get 503 `model_disabled`; queued tasks
    keep draining and results stay readable. The flag lives in Redis (every gateway replica,
    and a restarted one, honours it) until `enable`."""
    await services.catalog.get(name)
    reason = body.reason if body else ""
    flag = await services.switches.disable(name, by=admin, reason=reason)
    audit.warning("admin %s disabled model %s (reason: %r)", admin, name, reason)
    return SwitchOut(model=name, disabled=disabled_out(flag, admin=True))


@router.post(
    "/models/{name}/enable",
    response_model=SwitchOut,
    responses=error_responses(401, 403, 422, 503),
)
async def enable_model(name: ModelName, admin: AdminUser, services: ServicesDep) -> SwitchOut:
    """Take new work for the model again."""
    was = await services.switches.enable(name)
    audit.warning("admin %s enabled model %s (was disabled: %s)", admin, name, was)
    return SwitchOut(model=name, disabled=None)


@router.get(
    "/models/{name}/dead-letters",
    response_model=DeadLettersOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def list_dead_letters(
    name: ModelName,
    admin: AdminUser,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 100,
) -> DeadLettersOut:
    """The oldest dead letters of the model (tasks that failed for good, or could not be
    read), left where they are: listing consumes nothing."""
    letters = await services.dead_letters.peek(name, limit)
    depth = await services.dead_letters.depth(name)
    audit.info("admin %s listed %d dead letter(s) of %s", admin, len(letters), name)
    return DeadLettersOut(
        model=name,
        total=depth if depth is not None else len(letters),
        items=[
            DeadLetterOut(
                task_id=letter.task_id,
                owner=letter.owner,
                attempts=letter.attempts,
                reason=letter.reason,
                dead_lettered_at=letter.dead_lettered_at,
                error=letter.error,
                error_code=letter.error_code,
            )
            for letter in letters
        ],
    )


@router.post(
    "/models/{name}/dead-letters/replay",
    response_model=ReplayedOut,
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def replay_dead_letters(
    name: ModelName,
    admin: AdminUser,
    services: ServicesDep,
    body: Annotated[ReplayIn | None, Body()] = None,
) -> ReplayedOut:
    """Send dead letters back to the model's queue (all, or those of `task_ids`): each task
    is `pending` again with its attempts reset, and runs on the model as deployed now."""
    wanted = set(body.task_ids) if body and body.task_ids is not None else None
    replayed = await services.dead_letters.replay(name, wanted)
    audit.warning(
        "admin %s replayed %d dead letter(s) of %s: %s", admin, len(replayed), name, replayed
    )
    return ReplayedOut(model=name, replayed=replayed)


@router.post(
    "/models/{name}/dead-letters/purge",
    response_model=PurgedOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def purge_dead_letters(name: ModelName, admin: AdminUser, services: ServicesDep) -> PurgedOut:
    """Delete every dead letter of the model (their tasks stay `failed`)."""
    purged = await services.dead_letters.purge(name)
    audit.warning("admin %s purged %d dead letter(s) of %s", admin, purged, name)
    return PurgedOut(model=name, purged=purged)


@router.get(
    "/users",
    response_model=UserListOut,
    responses=error_responses(401, 403, 422, 503),
)
async def list_users(
    admin: AdminUser,
    services: ServicesDep,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9]{1,20}$")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 100,
) -> UserListOut:
    """Registered logins, a page at a time."""
    logins, after = await services.users.logins(int(cursor or 0), limit)
    return UserListOut(users=logins, next_cursor=str(after) if after else None)


@router.get(
    "/users/{login}",
    response_model=AdminUserOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def user_detail(login: Login, admin: AdminUser, services: ServicesDep) -> AdminUserOut:
    """One user: role, limits in force, the overrides an admin set, and usage now."""
    return await _user_out(services, login)


@router.patch(
    "/users/{login}/limits",
    response_model=AdminUserOut,
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def set_user_limits(
    login: Login, changes: LimitOverrides, admin: AdminUser, services: ServicesDep
) -> AdminUserOut:
    """Change a user's limits: each field given replaces the default for them (-1: no limit;
    null: back to the default). Every gateway applies it to the user's next request."""
    await _user_out(services, login)  # 404 for no such user
    await services.limits.update(login, changes)
    audit.warning(
        "admin %s set the limits of %s: %s",
        admin,
        login,
        changes.model_dump(exclude_unset=True, mode="json"),
    )
    return await _user_out(services, login)


async def _user_out(services: ServicesDep, login: str) -> AdminUserOut:
    role = await services.users.role(login)
    if role is None:
        raise UserNotFound(f"no user {login!r}")
    limits = await services.limits.effective(login)
    return AdminUserOut(
        login=login,
        role=role,
        limits=limits,
        overrides=await services.limits.overrides(login),
        usage=await usage_of(services, login, limits),
    )


@status_router.get("/status", response_model=StatusOut, responses=error_responses(401, 403, 503))
async def platform_status(admin: AdminUser, services: ServicesDep) -> StatusOut:
    """The platform at a glance: every node's memory, the gateway's and every model
    replica's memory, the platform version and the time."""
    nodes: dict[str, NodeOut] = {}
    replicas: dict[str, int] = {}
    for name, detail, status in await services.replica_reports():
        replicas[f"{name}/{detail.instance_id}"] = status.rss_bytes
        node = nodes.setdefault(
            status.node_id,
            NodeOut(
                node_id=status.node_id,
                address=status.node_address,
                memory_total_bytes=status.node_memory_total_bytes,
                memory_available_bytes=status.node_memory_available_bytes,
                replicas=0,
            ),
        )
        node.replicas += 1
    memory = psutil.virtual_memory()
    audit.info("admin %s read the platform status", admin)
    return StatusOut(
        version=_platform_version(),
        time=datetime.now(UTC),
        gateway_pid=os.getpid(),
        gateway_rss_bytes=psutil.Process().memory_info().rss,
        gateway_node_memory_total_bytes=memory.total,
        gateway_node_memory_available_bytes=memory.available,
        nodes=sorted(nodes.values(), key=lambda n: n.node_id),
        replica_rss_bytes=replicas,
        uptime_s=time.time() - psutil.Process().create_time(),
    )


def _platform_version() -> str:
    try:
        return version("model-serving-platform")
    except PackageNotFoundError:
        return "unknown"
