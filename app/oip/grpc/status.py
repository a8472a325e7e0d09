"""The one place the platform's errors become gRPC status codes (as their HTTP codes say)."""

from __future__ import annotations

import grpc

from app.core.errors import AppError

_BY_HTTP = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    502: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def status_of(error: AppError) -> grpc.StatusCode:
    """The gRPC status of an error whose HTTP status the REST routes answer with."""
    return _BY_HTTP.get(error.status_code, grpc.StatusCode.INTERNAL)


def message_of(error: AppError) -> str:
    """What the client is told: the error's detail, as REST sends it (a 500 says no more)."""
    if error.status_code >= 500 and error.status_code not in _BY_HTTP:
        return "internal error"
    return error.detail if isinstance(error.detail, str) else str(error.detail)
