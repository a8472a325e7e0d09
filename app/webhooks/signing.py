"""Signing deliveries as the Standard Webhooks specification says (standardwebhooks.com).

Each user has a signing secret of their own (`whsec_` + base64 of 32 random bytes), readable
and rotatable by that user only, so no receiver holds a key that signs another tenant's
deliveries. A delivery carries:

    webhook-id          the task id (the same on every retry: a receiver dedupes on it)
    webhook-timestamp   Unix seconds when this attempt was signed
    webhook-signature   "v1,<base64 HMAC-SHA256 of '<id>.<timestamp>.<body>'>", space-separated,
                        one per secret in force (the current one, and the previous one for a
                        grace period after a rotation)

A receiver verifies with the specification's own libraries, e.g. in Python
`standardwebhooks.Webhook(secret).verify(body, headers)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from standardwebhooks import Webhook

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def signature_headers(
    message_id: str, body: bytes, signing_secrets: Sequence[str], timestamp: int
) -> dict[str, str]:
    """The three Standard Webhooks headers of `body`, signed with every secret given."""
    if not signing_secrets:
        raise ValueError("a delivery needs at least one signing secret")
    signed_at = datetime.fromtimestamp(timestamp, UTC)
    text = body.decode()
    signatures = " ".join(
        Webhook(secret).sign(message_id, signed_at, text) for secret in signing_secrets
    )
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signatures,
    }
