"""What every `/v1` model route shares: finding the live model that serves an endpoint, and
counting tokens for `usage`."""

from __future__ import annotations

from collections.abc import Iterable

from app.catalog.catalog import LiveModel, ModelCatalog
from app.core.errors import ModelNotFound
from app.openai.errors import NoSuchModel


async def served_model(catalog: ModelCatalog, name: str, endpoint: str) -> LiveModel:
    """The live model `name`, which must declare `@model(openai=endpoint)`.

    Raises:
        NoSuchModel: no such live model, or it does not serve `endpoint`.
        ModelUnavailable, Unavailable: as `ModelCatalog.get`.
    """
    try:
        model = await catalog.get(name)
    except ModelNotFound:
        raise NoSuchModel(name, endpoint) from None
    if model.view.openai_endpoint != endpoint:
        raise NoSuchModel(name, endpoint)
    return model


def count_tokens(texts: Iterable[str]) -> int:
    """`usage` tokens: whitespace-separated words (the gateway runs no tokenizer)."""
    return sum(len(text.split()) for text in texts)
