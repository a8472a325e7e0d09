"""Callback URL rules and delivery signatures (no service needed)."""

from __future__ import annotations

import time

import pytest
import standardwebhooks

from app.accounts.secrets import new_webhook_secret
from app.webhooks.signing import signature_headers
from app.webhooks.targets import (
    CallbackInvalid,
    CallbackRefused,
    check_callback_url,
    resolve_target,
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


def _resolver(*answers):
    calls = []

    async def resolve(host, port):
        calls.append((host, port))
        return list(answers[min(len(calls), len(answers)) - 1])

    resolve.calls = calls
    return resolve


async def test_a_host_allowed_by_the_wildcard_gets_only_public_addresses():
    resolve = _resolver(["10.0.0.7", "93.184.216.34"])
    target = await resolve_target("https://hooks.example.com/x?y=1", ["*"], resolve)
    assert target.address == "93.184.216.34" and resolve.calls == [("hooks.example.com", 443)]
    assert target.pinned_url == "https://93.184.216.34:443/x?y=1"
    assert target.host_header == "hooks.example.com"


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "::1", "fc00::1"])
async def test_a_name_resolving_to_an_internal_address_is_refused(address):
    with pytest.raises(CallbackRefused, match="non-public"):
        await resolve_target("http://rebind.example.com/x", ["*"], _resolver([address]))


async def test_a_host_listed_by_name_or_network_may_be_internal():
    target = await resolve_target(
        "http://hooks.internal:8080/x", ["hooks.internal"], _resolver(["10.0.0.9"])
    )
    assert target.pinned_url == "http://10.0.0.9:8080/x"
    assert target.host_header == "hooks.internal:8080"
    by_network = await resolve_target("http://10.2.3.4/x", ["10.0.0.0/8"], _resolver([]))
    assert by_network.address == "10.2.3.4"
    v6_answer = await resolve_target(
        "http://hooks.internal/x", ["hooks.internal"], _resolver(["fd00::5"])
    )
    assert v6_answer.pinned_url == "http://[fd00::5]:80/x"


async def test_the_allow_list_is_checked_again_at_delivery():
    with pytest.raises(CallbackRefused):
        await resolve_target("https://hooks.example.com/x", [], _resolver(["93.184.216.34"]))


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
