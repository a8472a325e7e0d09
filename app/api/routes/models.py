"""The live models: the list, one model's detail with its replicas, and its schema."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.accounts.users import ROLE_ADMIN
from app.api.deps import CurrentUser, ServicesDep
from app.api.routing import BoundedJsonRoute
from app.api.schemas import (
    DisabledOut,
    ModelDetail,
    ModelOut,
    QueueOut,
    ReplicaOut,
    error_responses,
)
from app.catalog.switches import Disabled
from app.core.broker import QueueNames
from app.services import Services
from protos.codec import PROTOBUF_CONTENT_TYPE
from registry.schemas import InstanceDetail

router = APIRouter(tags=["models"], route_class=BoundedJsonRoute)

ModelName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


@router.get(
    "/models",
    response_model=list[ModelOut],
    responses=error_responses(401, 503),
)
async def list_models(user: CurrentUser, services: ServicesDep) -> list[ModelOut]:
    """Live models with their message types, instances and queue length."""
    live = await services.catalog.live()
    names = [model.view.name for model in live]
    lengths = await _queue_lengths(services, names)
    disabled = await services.switches.disabled()
    return [
        ModelOut(
            name=model.view.name,
            request_type=model.view.request_type,
            response_type=model.view.response_type,
            instances=model.view.instances,
            queue_length=lengths.get(model.view.name),
            description=model.view.description,
            version=model.view.version,
            cached=model.view.cache_ttl_s > 0,
            streams=model.view.streams,
            disabled=model.view.name in disabled,
        )
        for model in live
    ]


@router.get(
    "/models/{name}",
    response_model=ModelDetail,
    responses=error_responses(401, 404, 422, 503),
)
async def model_detail(name: ModelName, user: CurrentUser, services: ServicesDep) -> ModelDetail:
    """One model: version, schema fingerprint, queue depths, disabled or not, and every live
    replica with its memory, CPU, uptime, task counts and last ping. Where replicas run (node,
    address, process) and who disabled the model are shown to admins only."""
    model = await services.catalog.get(name)
    admin = await services.accounts.role(user) == ROLE_ADMIN
    # None: a registry that restarted a moment ago and does not know the model yet.
    instances = await services.registry.instances(name) or []
    queues = QueueNames.for_model(name)
    lengths = await _queue_lengths(services, [queues.work, queues.dead_letter])
    flag = await services.switches.get(name)
    replicas = [_replica(detail, admin=admin) for detail in instances]
    view = model.view
    return ModelDetail(
        name=view.name,
        version=view.version,
        description=view.description,
        request_type=view.request_type,
        response_type=view.response_type,
        fingerprint=view.fingerprint,
        cached=view.cache_ttl_s > 0,
        streams=view.streams,
        disabled=None if flag is None else disabled_out(flag, admin=admin),
        queue=QueueOut(
            ready=lengths.get(queues.work),
            unacked=sum(r.tasks_in_flight for r in replicas),
            dead_letters=lengths.get(queues.dead_letter),
        ),
        replicas=replicas,
    )


@router.get(
    "/models/{name}/schema",
    responses={
        200: {
            "description": "A `google.protobuf.FileDescriptorSet` (protobuf bytes) holding the "
            "model's request and response messages and everything they import.",
            "content": {PROTOBUF_CONTENT_TYPE: {}},
        },
        **error_responses(401, 404, 422, 503),
    },
)
async def model_schema(name: ModelName, user: CurrentUser, services: ServicesDep) -> Response:
    """The model's message definitions, for protobuf clients built without this repository
    (e.g. `protoc --descriptor_set_in`, or `message_factory` in Python)."""
    model = await services.catalog.get(name)
    return Response(
        content=model.view.descriptor_set,
        media_type=PROTOBUF_CONTENT_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="{name}.binpb"',
            "X-Request-Type": model.view.request_type,
            "X-Response-Type": model.view.response_type,
        },
    )


async def _queue_lengths(services: Services, names: list[str]) -> dict[str, int | None]:
    try:
        return await asyncio.wait_for(
            services.publisher.queue_lengths(names), services.settings.io_timeout_s
        )
    except TimeoutError:
        return dict.fromkeys(names)


def _replica(detail: InstanceDetail, *, admin: bool) -> ReplicaOut:
    status = detail.status
    started = status.started_at if status and status.started_at else detail.registered_at
    placed = status is not None and admin
    return ReplicaOut(
        replica_id=detail.instance_id,
        node_id=status.node_id if placed and status else None,
        node_address=status.node_address if placed and status else None,
        pid=status.pid if placed and status else None,
        state=status.state if status else "running",
        rss_bytes=status.rss_bytes if status else 0,
        cpu_percent=status.cpu_percent if status else 0.0,
        started_at=_utc(started),
        uptime_s=max(0.0, time.time() - started),
        tasks_succeeded=status.tasks_succeeded if status else 0,
        tasks_failed=status.tasks_failed if status else 0,
        tasks_in_flight=status.tasks_in_flight if status else 0,
        last_ping=_utc(detail.last_seen),
        missed_pings=detail.missed_pings,
    )


def disabled_out(flag: Disabled, *, admin: bool) -> DisabledOut:
    """How a disabled flag is shown (model detail, admin answers): who did it, to admins."""
    return DisabledOut(by=flag.by if admin else None, at=_utc(flag.at), reason=flag.reason)


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
