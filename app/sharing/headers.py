"""The answer to a limit reached: 429 with `Retry-After` and the IETF rate-limit headers.

`RateLimit-Policy` and `RateLimit` follow draft-ietf-httpapi-ratelimit-headers (structured
fields): a policy names a quota `q` over a window `w` seconds; the current state says the
units `r` left and the seconds `t` until the quota is back.

    RateLimit-Policy: "submits";q=200;w=4
    RateLimit: "submits";r=0;t=1
"""

from __future__ import annotations

import math

from app.core.errors import TooManyRequests

RETRY_AFTER = "Retry-After"


def policy_header(name: str, quota: float, window_s: float | None = None) -> str:
    value = f'"{name}";q={max(0, math.floor(quota))}'
    if window_s is not None:
        value += f";w={max(1, math.ceil(window_s))}"
    return value


def state_header(name: str, remaining: float, reset_s: float) -> str:
    return f'"{name}";r={max(0, math.floor(remaining))};t={max(0, math.ceil(reset_s))}'


def bucket_headers(name: str, *, rate: float, burst: float, remaining: float) -> dict[str, str]:
    """The two headers of a token bucket (nothing when it has no limit)."""
    if rate < 0 or burst < 0:
        return {}
    window = burst / rate if rate > 0 else 3600.0
    refill = (burst - remaining) / rate if rate > 0 else 3600.0
    return {
        "RateLimit-Policy": policy_header(name, burst, window),
        "RateLimit": state_header(name, remaining, refill),
    }


def rate_limited(
    detail: str,
    *,
    policy: str,
    quota: float,
    remaining: float,
    retry_after_s: float,
    window_s: float | None = None,
) -> TooManyRequests:
    """A 429 with Retry-After and the rate-limit headers of the policy that refused."""
    wait = max(1, math.ceil(retry_after_s))
    return TooManyRequests(
        detail,
        headers={
            RETRY_AFTER: str(wait),
            "RateLimit-Policy": policy_header(policy, quota, window_s),
            "RateLimit": state_header(policy, remaining, wait),
        },
    )
