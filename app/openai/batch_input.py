"""Reading a batch's input file: one request per JSONL line, checked before anything runs.

Each line is `{"custom_id": ..., "method": "POST", "url": "/v1/embeddings", "body": {...}}`,
the body an embeddings request for one text. Every line goes to the same model (OpenAI's rule
too). A file with a bad line starts no work: the batch is `failed` with an error per bad line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from pydantic import ValidationError

from app.openai.schemas import BatchError, EmbeddingsRequest

# Errors listed at most for one file (a file of 50,000 bad lines needs only the first ones).
MAX_ERRORS = 100


@dataclass(frozen=True)
class BatchLine:
    custom_id: str
    text: str
    encoding_format: str
    dimensions: int | None


@dataclass(frozen=True)
class BatchInput:
    model: str
    lines: list[BatchLine]


class InvalidBatchInput(Exception):  # noqa: N818 - carries the errors
    def __init__(self, errors: list[BatchError]) -> None:
        super().__init__(f"{len(errors)} invalid line(s)")
        self.errors = errors


def parse_batch_input(content: bytes, *, endpoint: str, max_lines: int) -> BatchInput:
    """The lines of an input file.

    Raises:
        InvalidBatchInput: with an error per bad line (at most `MAX_ERRORS`).
    """
    errors: list[BatchError] = []
    lines: list[BatchLine] = []
    models: set[str] = set()
    seen: set[str] = set()

    def bad(number: int, code: str, message: str, param: str | None = None) -> None:
        if len(errors) < MAX_ERRORS:
            errors.append(BatchError(code=code, message=message, line=number, param=param))

    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidBatchInput(
            [BatchError(code="invalid_file", message="the file is not UTF-8 text")]
        ) from None
    numbered = [(n, raw) for n, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not numbered:
        raise InvalidBatchInput([BatchError(code="empty_file", message="the file has no lines")])
    if len(numbered) > max_lines:
        raise InvalidBatchInput(
            [
                BatchError(
                    code="too_many_lines",
                    message=f"the file has {len(numbered)} lines; a batch takes at most "
                    f"{max_lines}",
                )
            ]
        )
    for number, raw in numbered:
        try:
            line = json.loads(raw)
        except ValueError:
            bad(number, "invalid_json_line", "the line is not JSON")
            continue
        if not isinstance(line, dict):
            bad(number, "invalid_json_line", "the line is not a JSON object")
            continue
        custom_id = line.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            bad(number, "missing_required_parameter", "custom_id must be a string", "custom_id")
            continue
        if custom_id in seen:
            bad(
                number, "duplicate_custom_id", f"custom_id {custom_id!r} is used twice", "custom_id"
            )
            continue
        seen.add(custom_id)
        if line.get("method", "POST") != "POST":
            bad(number, "invalid_method", "method must be POST", "method")
            continue
        if line.get("url") != endpoint:
            bad(
                number, "mismatched_endpoint", f"url must be the batch's endpoint {endpoint}", "url"
            )
            continue
        try:
            body = EmbeddingsRequest.model_validate(line.get("body"))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            bad(number, "invalid_body", f"body.{where}: {first.get('msg', '')}", f"body.{where}")
            continue
        texts = [body.input] if isinstance(body.input, str) else body.input
        if len(texts) != 1 or not texts[0].strip():
            bad(
                number,
                "invalid_body",
                "body.input must be one non-empty text per line (put more texts on more lines)",
                "body.input",
            )
            continue
        models.add(body.model)
        lines.append(BatchLine(custom_id, texts[0], body.encoding_format, body.dimensions))
    if not errors and len(models) > 1:
        errors.append(
            BatchError(
                code="mixed_models",
                message=f"every line must name the same model; the file names {sorted(models)}",
            )
        )
    if errors:
        raise InvalidBatchInput(errors)
    return BatchInput(model=models.pop(), lines=lines)
