"""`/v1/embeddings` on a model that declares `openai="embeddings"`: texts in, vectors out.

Each text becomes the model's request message (the mapped string field), served by the same
replicas as `/infer`; a batching model groups concurrent texts in its `@serve.batch`.
"""

from __future__ import annotations

import array
import asyncio
import base64
import sys
from collections.abc import Sequence
from typing import Any

from app.catalog.catalog import LiveModel, ModelCatalog
from app.core.errors import AppError
from app.inference.caller import ModelCaller
from app.inference.outcome import Outcome, outcome_error
from app.openai.errors import OpenAIInvalid
from app.openai.schemas import MAX_INPUTS, Embedding, EmbeddingsRequest, EmbeddingsResponse, Usage
from app.openai.served import count_tokens, served_model

ENDPOINT = "embeddings"


async def embedding_model(catalog: ModelCatalog, name: str) -> LiveModel:
    """The live model `name`, which must serve embeddings (`served_model`)."""
    return await served_model(catalog, name, ENDPOINT)


def input_texts(request: EmbeddingsRequest) -> list[str]:
    """The request's texts, in order.

    Raises:
        OpenAIInvalid: no text, an empty one, or more than `MAX_INPUTS`.
    """
    texts = [request.input] if isinstance(request.input, str) else list(request.input)
    if not texts:
        raise OpenAIInvalid("input must hold at least one text", param="input")
    if len(texts) > MAX_INPUTS:
        raise OpenAIInvalid(f"input holds {len(texts)} texts; at most {MAX_INPUTS}", param="input")
    for index, text in enumerate(texts):
        if not text.strip():
            raise OpenAIInvalid(f"input[{index}] is empty", param="input")
    return texts


def request_payload(model: LiveModel, text: str) -> bytes:
    """The model's request message for one text, serialized as `/infer` and tasks send it."""
    message = model.types.request()
    setattr(message, model.view.openai_input, text)
    return message.SerializeToString(deterministic=True)


def embedding_of(model: LiveModel, response: bytes) -> list[float]:
    """The embedding in one of the model's response messages."""
    message = model.types.response.FromString(response)
    return list(getattr(message, model.view.openai_output))


def encoded(vector: Sequence[float], encoding_format: str) -> list[float] | str:
    """`float`: the numbers; `base64`: their little-endian float32 bytes (what the `openai`
    package decodes with numpy's `frombuffer(..., dtype="float32")`)."""
    if encoding_format != "base64":
        return list(vector)
    packed = array.array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def embeddings_body(
    model_name: str,
    vectors: Sequence[Sequence[float]],
    texts: Sequence[str],
    *,
    encoding_format: str,
    dimensions: int | None,
) -> dict[str, Any]:
    """The response OpenAI's API gives for these embeddings.

    Raises:
        OpenAIInvalid: `dimensions` is not the model's own.
    """
    for vector in vectors:
        if dimensions is not None and dimensions != len(vector):
            raise OpenAIInvalid(
                f"this model's embeddings have {len(vector)} dimensions; it cannot give "
                f"{dimensions} (leave dimensions out)",
                param="dimensions",
            )
    tokens = count_tokens(texts)
    return EmbeddingsResponse(
        data=[
            Embedding(index=i, embedding=encoded(v, encoding_format)) for i, v in enumerate(vectors)
        ],
        model=model_name,
        usage=Usage(prompt_tokens=tokens, total_tokens=tokens),
    ).model_dump(mode="json")


async def embed(caller: ModelCaller, model: LiveModel, texts: Sequence[str]) -> list[list[float]]:
    """Every text's embedding, through the model's replicas (`ModelCaller.infer`).

    Raises:
        what `/infer` raises for a failed call (`outcome_error`), naming the input.
    """
    outcomes = await asyncio.gather(
        *(caller.infer(model.view, request_payload(model, text)) for text in texts)
    )
    vectors = []
    for index, outcome in enumerate(outcomes):
        if outcome.outcome is not Outcome.OK:
            error = outcome_error(outcome)
            if len(texts) > 1 and isinstance(error, AppError):
                error.detail = f"input[{index}]: {error.detail}"
            raise error
        vectors.append(embedding_of(model, outcome.response))
    return vectors
