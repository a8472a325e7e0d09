"""`summarizer`: an extractive summary of a text document, ranked with TF-IDF (scikit-learn)."""

from __future__ import annotations

import asyncio
import re

from deployments.sdk import InvalidInput, build_app, model
from protos.example_pb2 import ExampleModelRequest, ExampleModelResponse

MAX_DOCUMENT_BYTES = 512 * 1024
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[^a-z])")


def split_sentences(text: str) -> list[str]:
    """Sentences of `text`: a line break, or '.', '!', '?' before a non-lowercase word."""
    sentences: list[str] = []
    for line in text.splitlines():
        sentences.extend(" ".join(s.split()) for s in _SENTENCE_END.split(line))
    return [s for s in sentences if s]


def fix_author(author: str) -> str:
    """'  ada   LOVELACE ' -> 'Ada Lovelace' (keeps particles such as 'van' lowercase)."""
    particles = {"van", "von", "de", "der", "da", "di", "la", "le", "du"}
    words = author.split()
    return " ".join(
        word.lower() if i and word.lower() in particles else word[:1].upper() + word[1:].lower()
        for i, word in enumerate(words)
    )


@model(name="summarizer", request=ExampleModelRequest, response=ExampleModelResponse)
class Summarizer:
    """Picks the most representative sentences of a document (extractive, TF-IDF ranked) and
    tidies the author's name."""

    def __init__(self, max_sentences: int = 3) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._max_sentences = max_sentences
        self._vectorizer = TfidfVectorizer

    async def process_request(self, request: ExampleModelRequest) -> ExampleModelResponse:
        content = request.file.content
        if not content:
            raise InvalidInput("file.content must not be empty")
        if len(content) > MAX_DOCUMENT_BYTES:
            raise InvalidInput(f"file.content must be at most {MAX_DOCUMENT_BYTES} bytes")
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput("file.content must be UTF-8 text") from exc
        # Ranking is CPU work: keep the replica's event loop free for its other tasks.
        summary = await asyncio.to_thread(self.summarize, text)
        return ExampleModelResponse(summary=summary, fixed_author=fix_author(request.author))

    def summarize(self, text: str) -> str:
        sentences = split_sentences(text)
        if len(sentences) <= self._max_sentences:
            return " ".join(sentences)
        keep = max(1, min(self._max_sentences, round(len(sentences) * 0.3)))
        try:
            matrix = self._vectorizer(stop_words="english").fit_transform(sentences)
        except ValueError:  # only stop words: nothing to rank by
            return " ".join(sentences[:keep])
        centroid = matrix.mean(axis=0).A1
        scores = matrix @ centroid
        ranked = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))[:keep]
        return " ".join(sentences[i] for i in sorted(ranked))


app = build_app(Summarizer)
