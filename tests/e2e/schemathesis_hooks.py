"""Schemathesis hooks for the contract run (SCHEMATHESIS_HOOKS=tests.e2e.schemathesis_hooks).

An Idempotency-Key means "the same request as before": reusing one generated value for
different bodies is a client error the API answers 422 by design, not a contract breach.
A schema-valid key is made unique per request; an invalid one is left for the negative tests.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

VALID_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


@schemathesis.hook
def before_call(ctx: Any, case: Any, **kwargs: Any) -> None:
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and VALID_KEY.match(key):
        headers["Idempotency-Key"] = uuid.uuid4().hex
        case.headers = headers
