"""Callback URL rules and delivery signatures (no service needed)."""

from __future__ import annotations

import time

import pytest
import standardwebhooks

from app.core.secrets import new_webhook_secret
from app.webhooks.signing import signature_headers
from app.webhooks.targets import (
    CallbackInvalid,
    CallbackRefused,
    check_callback_url,
    must_check_addresses,
)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/x", ["*"]),
        ("http://93.184.216.34:8080/x", ["*"]),
        ("https://hooks.example.com/x", ["hooks.example.com"]),
        ("https://a.b.example.org/x", ["*.example.org"]),
        ("http://127.0.0.1:9000/hook", ["127.0.0.1"]),
        ("http://localhost:9000/hook", ["localhost"]),
    ],
)
def test_allowed_callbacks(url, allowed):
    assert check_callback_url(url, allowed) == url


@pytest.mark.parametrize(
    ("url", "allowed", "why"),
    [
        ("ftp://example.com/x", ["*"], "http or https"),
        ("http:///nohost", ["*"], "http or https"),
        ("http://127.0.0.1/x", ["*"], "not allowed"),
        ("http://10.1.2.3/x", ["*"], "not allowed"),
        ("http://[::1]/x", ["*"], "http or https"),
        ("http://169.254.169.254/latest", ["*"], "not allowed"),
        ("http://localhost/x", ["*"], "not allowed"),
        ("http://db.internal/x", ["*"], "not allowed"),
        ("https://evil.example.com/x", ["hooks.example.com"], "not allowed"),
        ("https://example.org.evil.com/x", ["*.example.org"], "not allowed"),
        ("https://hooks.example.com/x", [], "not allowed"),
        ("http://example.com:99999/x", ["*"], "http or https"),
        ("http://example.com/" + "x" * 3000, ["*"], "longer than"),
    ],
)
def test_refused_callbacks(url, allowed, why):
    with pytest.raises((CallbackRefused, CallbackInvalid), match=why):
        check_callback_url(url, allowed)


@pytest.mark.parametrize("url", ["ftp://x/y", "http:///nohost", "http://x:70000/", "not a url"])
def test_malformed_callbacks_are_invalid_not_refused(url):
    with pytest.raises(CallbackInvalid):
        check_callback_url(url, ["*"])


def test_only_hosts_allowed_by_the_wildcard_have_their_addresses_checked():
    assert must_check_addresses("https://hooks.example.com/x", ["*"])
    assert not must_check_addresses("https://hooks.example.com/x", ["hooks.example.com", "*"])


def test_signature_matches_the_specifications_test_vector():
    # The example of the Standard Webhooks specification (and its reference libraries' tests).
    headers = signature_headers(
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        b'{"test": 2432232314}',
        ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        1614265330,
    )
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }


def test_a_receiver_on_the_reference_library_verifies_and_refuses_tampering():
    secret, other = new_webhook_secret(), new_webhook_secret()
    assert secret.startswith("whsec_") and secret != other
    body = b'{"task_id": "t"}'
    headers = signature_headers("t", body, [secret], int(time.time()))
    assert standardwebhooks.Webhook(secret).verify(body, headers) == {"task_id": "t"}
    for key, payload, sent in (
        (other, body, headers),
        (secret, body + b" ", headers),
        (secret, body, {**headers, "webhook-id": "u"}),
        (secret, body, {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}),
    ):
        with pytest.raises(standardwebhooks.WebhookVerificationError):
            standardwebhooks.Webhook(key).verify(payload, sent)


def test_after_a_rotation_either_secret_verifies():
    new, previous = new_webhook_secret(), new_webhook_secret()
    body = b"{}"
    headers = signature_headers("t", body, [new, previous], int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, previous):
        standardwebhooks.Webhook(secret).verify(body, headers)
