"""`summarizer`: an extractive summary of a text document, ranked with TF-IDF (scikit-learn)."""

from __future__ import annotations

import asyncio
import re

from deployments.sdk import InvalidInput, model, serve_app
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
    """'  ada   Lovelace ' -> 'ada Lovelace (summarized by AI)': the author's name as given
    (whitespace tidied), credited with the summary."""
    return f"{' '.join(author.split())} (summarized by AI)"


@model(
    name="summarizer",
    request=ExampleModelRequest,
    response=ExampleModelResponse,
    max_replicas=2,
)
class Summarizer:
    """Picks the most representative sentences of a document (extractive, TF-IDF ranked) and
    credits the author."""

    def __init__(self, max_sentences: int = 3) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self._max_sentences = _sentences(max_sentences)
        self._vectorizer = TfidfVectorizer

    def reconfigure(self, config: dict[str, object]) -> None:
        """`user_config` from serve_config.yaml: `max_sentences`, changed without a restart."""
        unknown = set(config) - {"max_sentences"}
        if unknown:
            raise ValueError(f"summarizer user_config: unknown key(s) {sorted(unknown)}")
        if "max_sentences" in config:
            self._max_sentences = _sentences(config["max_sentences"])

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


def _sentences(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_sentences must be a positive integer, not {value!r}")
    return value


app = serve_app(Summarizer)
