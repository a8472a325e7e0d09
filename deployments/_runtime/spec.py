"""What a replica serves: the model's spec with an operator's overrides applied, how many
deliveries a replica holds, and what it registers about its model."""

from __future__ import annotations

import dataclasses
from typing import Any

from deployments._contract import ModelSettings, ModelSpec, check_batching, check_name, spec_of
from protos.descriptors import descriptor_set, fingerprint
from registry.schemas import ModelInfo


def model_info(spec: ModelSpec, app_name: str = "", *, default_prefetch: int = 16) -> ModelInfo:
    """What a replica of `spec` tells the registry about its model."""
    return ModelInfo(
        name=spec.name,
        request_type=spec.request.DESCRIPTOR.full_name,
        response_type=spec.response.DESCRIPTOR.full_name,
        descriptor_set=descriptor_set(spec.request, spec.response),
        fingerprint=fingerprint(spec.request, spec.response),
        description=spec.description,
        app_name=app_name,
        scale_to_zero=spec.settings.min_replicas == 0,
        version=spec.version,
        deployment=spec.name,
        cache_ttl_s=spec.settings.cache_ttl_s or 0.0,
        timeout_s=spec.settings.timeout_s or 0.0,
        fair_share_window=fair_share_window(spec.settings, prefetch(spec, default_prefetch)),
        openai_endpoint=spec.openai.endpoint if spec.openai else "",
        openai_input=spec.openai.input if spec.openai else "",
        openai_output=spec.openai.output if spec.openai else "",
        streams=spec.streams,
    )


def prefetch(spec: ModelSpec, default: int) -> int:
    """Deliveries a replica holds at once: its concurrency, and for a batching model room for
    the batch that runs and the next one filling."""
    count = spec.settings.max_concurrency or default
    if spec.settings.batching:
        count = max(count, 2 * spec.settings.max_batch_size)
    return count


def effective_spec(model_cls: type, overrides: dict[str, Any] | None) -> ModelSpec:
    """The class's `ModelSpec` with `overrides` (a new `name`, `description`, or settings)
    applied.

    Raises:
        TypeError: an override names no setting, has a bad value, or an invalid model name.
    """
    spec = spec_of(model_cls)
    if not overrides:
        return spec
    overrides = dict(overrides)
    name = overrides.pop("name", spec.name)
    check_name(name)
    description = overrides.pop("description", spec.description)
    settings = spec.settings.replace(f"model {name!r}", overrides)
    spec = dataclasses.replace(spec, name=name, description=description, settings=settings)
    check_batching(model_cls, spec)
    return spec


def fair_share_window(settings: ModelSettings, prefetch: int) -> int:
    """How many of one user's tasks may be in the model's queue at once: the model's own
    setting, or enough for one user alone to keep every replica it may have busy."""
    if settings.fair_share_window is not None:
        return settings.fair_share_window
    return settings.max_replicas * prefetch
