"""Every error the platform reports to a client, each carrying its HTTP status and stable code.

One handler (`app.main`) turns an `AppError` into `{"error": code, "detail": message}`; 5xx
details are logged and replaced by a generic message so no internals reach a client.
"""

from __future__ import annotations

from typing import ClassVar


class AppError(Exception):
    """Base of every error with a defined HTTP answer."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str = "", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail or self.code)
        self.detail = detail or self.code
        if headers is not None:
            self.headers = headers


class BadRequest(AppError):
    """A body that cannot be decoded at all (e.g. invalid protobuf bytes)."""

    status_code = 400
    code = "bad_request"


class Unauthorized(AppError):
    """Missing, malformed, expired or forged credentials."""

    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: str = "not authenticated") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class CallbackNotAllowed(Forbidden):
    """A callback URL whose host the webhook allow-list does not cover."""

    code = "callback_not_allowed"


class ModelNotFound(AppError):
    status_code = 404
    code = "model_not_found"


class UserNotFound(AppError):
    status_code = 404
    code = "user_not_found"


class TaskNotFound(AppError):
    """Unknown task id, or a task whose result has expired."""

    status_code = 404
    code = "task_not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class TaskFinished(Conflict):
    """The task is already in a final state (it cannot be cancelled any more)."""

    code = "task_finished"


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(AppError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInput(AppError):
    """A well-formed body that does not match what is expected (a field, a type, a rule)."""

    status_code = 422
    code = "invalid_input"


class TooManyRequests(AppError):
    status_code = 429
    code = "too_many_requests"


class ModelFailed(AppError):
    """A synchronous call in which the model raised (or answered with the wrong type).

    502: the gateway is fine, the model behind it failed; the detail is the model's error
    text, as a failed task's document carries it.
    """

    status_code = 502
    code = "model_error"


class ModelTimeout(AppError):
    """A synchronous call that outlasted the model's `timeout_s` (or APP_INFER_TIMEOUT_S)."""

    status_code = 504
    code = "model_timeout"


class Unavailable(AppError):
    """A dependency (broker, store, registry) cannot be reached right now."""

    status_code = 503
    code = "unavailable"

    def __init__(self, detail: str = "service unavailable", retry_after_s: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_s)})


class ModelUnavailable(Unavailable):
    """The model is registered but has no live instance to consume its queue."""

    code = "model_unavailable"


class ModelDisabled(Unavailable):
    """An admin disabled the model: it takes no new work while its queue drains."""

    code = "model_disabled"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, retry_after_s=60)


class QueueNotFound(AppError):
    """The model has no dead-letter queue (no replica of it ever started)."""

    status_code = 404
    code = "queue_not_found"
