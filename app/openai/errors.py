"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.

The platform's one error handler (`app.main.error_response`) answers routes under `/v1` with
this body; the status codes are the platform's own.
"""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError, InvalidInput, ModelNotFound

# OpenAI's error types by HTTP status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error_body(
    status: int, code: str, detail: Any, param: str | None = None
) -> dict[str, Any]:
    message = detail if isinstance(detail, str) else _validation_text(detail)
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _validation_text(detail: Any) -> str:
    """FastAPI's validation errors (a list of {loc, msg}) as one sentence."""
    if isinstance(detail, list):
        parts = []
        for item in detail:
            loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
            parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts)
    return str(detail)


class OpenAIInvalid(InvalidInput):
    """A request OpenAI would refuse as `invalid_request_error`, naming the parameter."""

    status_code = 400

    def __init__(self, detail: str, *, param: str | None = None) -> None:
        super().__init__(detail)
        self.param = param


class NoSuchModel(ModelNotFound):
    """No live model of that name serves the endpoint asked for."""

    def __init__(self, name: str, endpoint: str) -> None:
        super().__init__(
            f"The model `{name}` does not exist or does not serve /v1/{endpoint}; "
            "GET /v1/models lists the live models"
        )
        self.param = "model"


class NotFound(AppError):
    """A file or batch that does not exist, or is not the caller's (the same answer)."""

    status_code = 404
    code = "not_found"


def param_of(exc: Exception) -> str | None:
    value = getattr(exc, "param", None)
    return value if isinstance(value, str) else None
