"""The list of live models."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.api.deps import CurrentUser, ServicesDep
from app.api.schemas import ModelOut, error_responses

router = APIRouter(tags=["models"])


@router.get(
    "/models",
    response_model=list[ModelOut],
    responses=error_responses(401, 503),
)
async def list_models(user: CurrentUser, services: ServicesDep) -> list[ModelOut]:
    """Live models with their message types, instances and queue length."""
    live = await services.catalog.live()
    names = [model.view.name for model in live]
    try:
        lengths = await asyncio.wait_for(
            services.publisher.queue_lengths(names), services.settings.io_timeout_s
        )
    except TimeoutError:
        lengths = dict.fromkeys(names)
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
        )
        for model in live
    ]
