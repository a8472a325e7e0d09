"""The embedder example as plain Python: the packaged network loads offline and embeds."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from deployments.embedder import Embedder
from deployments.sdk import InvalidInput, spec_of
from protos.embedder_pb2 import EmbedRequest


@pytest.fixture(scope="module")
def embedder(monkeypatch_module):
    # Anything that tried the network would fail here rather than hang.
    monkeypatch_module.setenv("HF_HUB_OFFLINE", "1")
    return Embedder()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_declares_batching():
    settings = spec_of(Embedder).settings
    assert settings.max_batch_size == 32 and settings.batching


def test_a_batch_embeds_each_text_and_fails_only_the_bad_item(embedder):
    texts = ["Replicas drain the queue.", "", "Replicas drain the queue.", "A red apple."]
    answers = asyncio.run(embedder.process_batch([EmbedRequest(text=t) for t in texts]))
    assert isinstance(answers[1], InvalidInput) and "must not be empty" in str(answers[1])
    vectors = [np.array(a.vector) for a in (answers[0], answers[2], answers[3])]
    assert {a.dimension for a in (answers[0], answers[2], answers[3])} == {384}
    assert all(abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    alone = asyncio.run(embedder.process_request(EmbedRequest(text=texts[0])))
    np.testing.assert_allclose(alone.vector, vectors[0], atol=1e-5)  # batch or not, same
    assert vectors[0] @ vectors[2] < 0.5  # unrelated meaning
    with pytest.raises(InvalidInput, match="at most"):
        asyncio.run(embedder.process_request(EmbedRequest(text="x" * 10_001)))
