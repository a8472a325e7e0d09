"""What a client hears when a submit hits one of its owner's limits."""

from __future__ import annotations

from app.core.errors import AppError, Forbidden
from app.sharing.admission import Admission
from app.sharing.headers import rate_limited

# A full quota of tasks frees up as tasks finish: a client should look again after this.
ACTIVE_RETRY_AFTER_S = 5.0


class PriorityNotAllowed(Forbidden):
    code = "priority_not_allowed"


def refusal(admission: Admission, model: str) -> AppError:
    """The error for a refused `Admission` (429 with rate-limit headers, or 403)."""
    if admission.refused == "priority":
        return PriorityNotAllowed(
            f"your tasks may have priority {admission.highest.value} at most; an admin can raise it"
        )
    if admission.refused == "active":
        return rate_limited(
            f"you have {admission.count} of your {admission.quota} tasks queued or running on "
            f"model {model!r}; submit more as they finish (a batch is refused whole)",
            policy="tasks",
            quota=admission.quota,
            remaining=max(0, admission.quota - admission.count),
            retry_after_s=ACTIVE_RETRY_AFTER_S,
        )
    window = admission.burst / admission.rate if admission.rate > 0 else None
    return rate_limited(
        f"too many submits: {admission.burst:g} at once, then {admission.rate:g} per second",
        policy="submits",
        quota=admission.burst,
        remaining=admission.tokens_left,
        retry_after_s=admission.wait_s,
        window_s=window,
    )
