"""What a synchronous call of a model (`/infer`, Open Inference Protocol) comes back with.

A replica answers a handle call with an `InferOutcome` (plain data, so the gateway reads it
without the model's code); the gateway turns it into an HTTP answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.core.errors import AppError, BadRequest, InvalidInput, ModelFailed, ModelTimeout


class Outcome(StrEnum):
    OK = "ok"
    INVALID_INPUT = "invalid_input"  # the model raised InvalidInput: 422
    MODEL_ERROR = "model_error"  # the model raised, or returned the wrong type: 502
    TIMEOUT = "timeout"  # past the model's timeout_s: 504
    BAD_REQUEST = "bad_request"  # the bytes are not the model's request message: 400


@dataclass(frozen=True)
class InferOutcome:
    outcome: Outcome
    # The response message's protobuf bytes when OK, else empty.
    response: bytes = b""
    # What went wrong, for the client, when not OK.
    error: str = ""


def outcome_error(outcome: InferOutcome) -> AppError:
    """The error a failed call answers with (not for `Outcome.OK`)."""
    errors: dict[Outcome, type[AppError]] = {
        Outcome.INVALID_INPUT: InvalidInput,
        Outcome.MODEL_ERROR: ModelFailed,
        Outcome.TIMEOUT: ModelTimeout,
        Outcome.BAD_REQUEST: BadRequest,
    }
    return errors[outcome.outcome](outcome.error)
