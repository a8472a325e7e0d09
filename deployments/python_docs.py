"""`python-docs`: answers questions about the Python language from its reference documentation,
streaming the answer word by word (an `openai="chat"` model: `/v1/chat/completions`).

The reference is CPython's own (`pydoc_data.topics`, shipped with every Python: the text of
`help()` topics such as `with`, `assignment` or `lambda`). A TF-IDF index over its sections is
built at start (scikit-learn); each question is answered with the best-matching section,
yielded a word at a time at the pace a text generator would produce it (`words_per_second`).
It generates nothing new, so its answers are exact and its cost is the pace, not the CPU: it
shows what streaming gives a client (the first words at once, the rest as they come) on any
machine, offline.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from deployments.sdk import InvalidInput, model, serve_app
from protos.chat_pb2 import ChatChunk, ChatRequest

DEFAULT_MAX_WORDS = 120
MAX_WORDS = 2000
MAX_QUESTION_CHARS = 4000
_WORDS = re.compile(r"\S+\s*")
# Words of a question that name a section by another name.
ALIASES = {"dictionary": "typesmapping", "fstring": "formatstrings"}


@model(
    name="python-docs",
    request=ChatRequest,
    response=ChatChunk,
    openai="chat",
    num_cpus=0,  # it waits between words; the index is built once and searched in microseconds
    max_replicas=2,
)
class PythonDocs:
    """Answers a question about the Python language with the matching section of its reference
    documentation, streamed word by word (chat: POST /v1/chat/completions)."""

    def __init__(self, words_per_second: float = 40.0) -> None:
        from pydoc_data.topics import topics

        from sklearn.feature_extraction.text import TfidfVectorizer

        if words_per_second <= 0:
            raise ValueError("words_per_second must be positive")
        self._pause_s = 1.0 / words_per_second
        self._topics = sorted(topics)
        self._texts = [_readable(topics[name]) for name in self._topics]
        # No stop words: the sections' names are keywords like `with`, `if` and `in`.
        self._vectorizer = TfidfVectorizer(sublinear_tf=True)
        self._index = self._vectorizer.fit_transform(self._texts)
        # Each section's name as the words a question would use for it.
        self._name_words = [{_singular(part) for part in name.split("-")} for name in self._topics]

    def best_section(self, question: str) -> tuple[str, str]:
        """The name and the text of the section that best matches `question`: a section named
        by a word of the question first (`with`, `lambda`), the closest by TF-IDF among them."""
        scores = (self._index @ self._vectorizer.transform([question]).T).toarray().ravel()
        tokens = re.findall(r"[a-z]+(?:-[a-z]+)*", question.lower())
        # `f-strings` is `f`, `strings` and `fstrings`.
        tokens += [part for token in tokens for part in token.split("-")]
        words = {_singular(token.replace("-", "")) for token in tokens}
        aliased = {ALIASES[word] for word in words if word in ALIASES}
        for index, (name, parts) in enumerate(zip(self._topics, self._name_words, strict=True)):
            if name in aliased:
                scores[index] += 1.5  # named on purpose: `f-strings` is `formatstrings`
            elif parts <= words:
                # Named by the question; a name of more words (`string-methods`) is the
                # closer match than one of them alone (`strings`).
                scores[index] += 1.0 + 0.5 * (len(parts) - 1)
        best = int(scores.argmax())
        if scores[best] <= 0:
            raise InvalidInput(
                "no section of the Python reference matches the question; ask about a "
                "statement, an operator or a built-in concept (e.g. 'How does with work?')"
            )
        return self._topics[best], self._texts[best]

    async def process_request(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        questions = [turn.content for turn in request.messages if turn.role == "user"]
        if not questions or not questions[-1].strip():
            raise InvalidInput("the conversation needs a user message with a question")
        if len(questions[-1]) > MAX_QUESTION_CHARS:
            raise InvalidInput(f"the question must be at most {MAX_QUESTION_CHARS} characters")
        limit = min(request.max_tokens or DEFAULT_MAX_WORDS, MAX_WORDS)
        source, text = self.best_section(questions[-1])
        words = _WORDS.findall(text)
        for index, word in enumerate(words[:limit]):
            last = index == min(limit, len(words)) - 1
            finish = ("stop" if len(words) <= limit else "length") if last else ""
            yield ChatChunk(text=word, source=source if index == 0 else "", finish_reason=finish)
            if not last:
                await asyncio.sleep(self._pause_s)


def _readable(section: str) -> str:
    """A section without its headings' underlines (lines of only `*` or `=`)."""
    lines = (line for line in section.splitlines() if line.strip(" *=-"))
    return " ".join(" ".join(lines).split())


def _singular(word: str) -> str:
    """`lists` and `list` alike (a section is named `lists`, a question says "list")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


app = serve_app(PythonDocs)
