"""Callback URL rules and delivery signatures (no service needed)."""

from __future__ import annotations

import time

import pytest

from app.webhooks.targets import (
    CallbackInvalid,
    CallbackRefused,
    check_callback_url,
    must_check_addresses,
    sign,
    verify_signature,
)

SECRET = b"webhook-secret"


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


def test_signature_round_trip_and_tampering():
    body = b'{"task_id": "t"}'
    header = sign(SECRET, body, int(time.time()))
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body + b"x", header)
    assert not verify_signature(b"other", body, header)
    assert not verify_signature(SECRET, body, "garbage")
    assert not verify_signature(SECRET, body, header.replace("v1=", "v2="))


def test_signature_too_old_is_refused():
    old = int(time.time()) - 3600
    header = sign(SECRET, b"x", old)
    assert not verify_signature(SECRET, b"x", header)
    assert verify_signature(SECRET, b"x", header, now=old + 10)
