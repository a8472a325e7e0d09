"""Which callback URLs a webhook may go to."""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

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
    """Named in the allow-list itself (exactly, under a `*.domain` entry, or an address in a
    listed network such as `10.0.0.0/8`)."""
    for entry in allowed:
        entry = entry.strip().lower().rstrip(".")
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def is_public(address: str) -> bool:
    """A globally routable address (not loopback, private, link-local, reserved...)."""
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def check_callback_url(url: str, allowed: Sequence[str]) -> str:
    """Accept `url` as a callback target, or say why not.

    `allowed` holds host names (`hooks.example.com`), `*.domain` patterns, IP literals and
    networks (`10.0.0.0/8`), and `*` for any host with a public address. A host named
    explicitly is trusted even when it is loopback or private (that is how tests and internal
    receivers are allowed); `*` never covers such a host.

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


Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, from the system's resolver (one lookup)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """A callback URL checked for delivery: its host, and the one address it is sent to."""

    url: str
    host: str
    port: int
    address: str

    @property
    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address (what is connected to)."""
        parts = urlsplit(self.url)
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return urlunsplit(parts._replace(netloc=f"{literal}:{self.port}"))

    @property
    def host_header(self) -> str:
        return urlsplit(self.url).netloc.rsplit("@", 1)[-1]


async def resolve_target(url: str, allowed: Sequence[str], resolve: Resolver) -> Target:
    """Check `url` against the allow-list as it is now, resolve its host once, and pick the
    address to connect to: any address of a host the list names, only public addresses of a
    host allowed by `*` (loopback, private and link-local ones are refused, so a name that
    resolves or rebinds to an internal address reaches nothing).

    Raises:
        CallbackInvalid, CallbackRefused: as `check_callback_url`, and a host with no
            acceptable address (refused for good).
        OSError: the lookup failed (worth another attempt).
    """
    check_callback_url(url, allowed)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        addresses = await resolve(host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    listed = _listed(host, allowed)
    for address in addresses:
        if listed or is_public(address):
            return Target(url=url, host=host, port=port, address=address)
    raise CallbackRefused(
        f"{host} resolves to a non-public address ({addresses[0]}); list it in "
        "APP_WEBHOOK_ALLOWED_HOSTS to allow it"
    )
