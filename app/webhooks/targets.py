"""Which callback URLs a webhook may go to."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from protos.json_schema import digits_up_to

MAX_URL_CHARS = 2048
# Hosts "*" never covers, whatever their address.
_LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal")


class CallbackRefused(ValueError):
    """A well-formed callback URL whose host the allow-list does not cover."""


class CallbackInvalid(ValueError):
    """Not a usable http(s) URL at all."""


_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# What the submit routes document for `callback_url`: any string it matches is parsed without
# error; whether its host is allowed is configuration (403 when it is not).
CALLBACK_URL_PATTERN = (
    rf"^https?://{_LABEL}(?:\.{_LABEL})*"
    rf"(?::{digits_up_to(65535)})?(?:[/?#][\x21-\x7e]*)?$"
)


def _listed(host: str, allowed: Sequence[str]) -> bool:
    """Named in the allow-list itself (exactly, or under a `*.domain` entry)."""
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def is_public(address: str) -> bool:
    """A globally routable address (not loopback, private, link-local, reserved...)."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def check_callback_url(url: str, allowed: Sequence[str]) -> str:
    """Accept `url` as a callback target, or say why not.

    `allowed` holds host names (`hooks.example.com`), `*.domain` patterns, IP literals, and
    `*` for any host with a public address. A host named explicitly is trusted even when it is
    loopback or private (that is how tests and internal receivers are allowed); `*` never
    covers such a host.

    Raises:
        CallbackInvalid: not an http(s) URL with a host.
        CallbackRefused: a host the allow-list does not cover.
    """
    if len(url) > MAX_URL_CHARS:
        raise CallbackInvalid(f"callback_url is longer than {MAX_URL_CHARS} characters")
    if not re.match(CALLBACK_URL_PATTERN, url):
        raise CallbackInvalid("callback_url must be an http or https URL with a host name")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower().rstrip(".")
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise CallbackInvalid(f"callback_url is not a valid URL: {exc}") from exc
    if not host:
        raise CallbackInvalid("callback_url has no host")
    if _listed(host, allowed):
        return url
    if "*" in allowed and not host.endswith(_LOCAL_NAMES) and host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return url  # a name: its addresses are checked when it is called
        if is_public(host):
            return url
    raise CallbackRefused(
        f"callback host {host!r} is not allowed (APP_WEBHOOK_ALLOWED_HOSTS); loopback and "
        "private addresses must be listed explicitly"
    )


def must_check_addresses(url: str, allowed: Sequence[str]) -> bool:
    """True when the host was allowed only by `*`: its resolved addresses must be public."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return not _listed(host, allowed)
