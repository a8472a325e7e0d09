"""scripts/haproxy.sh and scripts/ingress.py: the front door's own additions to Ray's HAProxy
(client addresses, TLS) and the environment that starts it, checked with HAProxy itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import trustme

from scripts.ingress import haproxy_env
from tests.utils.net import free_port

ROOT = Path(__file__).resolve().parents[2]
WRAPPER = ROOT / "scripts/haproxy.sh"
# The shape of Ray's generated configuration, where the wrapper edits it.
CONFIG = """global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend http_frontend
    bind 127.0.0.1:18999
    default_backend gateway
backend gateway
    server one 127.0.0.1:1
"""


def _run(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The wrapper in HAProxy's check mode (-c): it edits the file, HAProxy validates it."""
    return subprocess.run(
        ["bash", str(WRAPPER), "-c", "-f", str(config)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_environment_names_haproxy_itself_even_where_it_is_already_set(tmp_path, monkeypatch):
    """Set twice (a shell that ran it already, a test inside a session): HAPROXY_BINARY must
    still be HAProxy, not the wrapper, which would exec itself forever."""
    monkeypatch.setenv("RAY_SERVE_HAPROXY_BINARY_PATH", str(WRAPPER))
    env = haproxy_env(tmp_path)
    assert Path(env["HAPROXY_BINARY"]).name == "haproxy"
    assert env["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(WRAPPER)
    assert os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] == str(WRAPPER)  # left as it was


def test_the_wrapper_refuses_to_exec_itself(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)
    done = _run(config, HAPROXY_BINARY=str(WRAPPER))
    assert done.returncode == 1 and "names this wrapper" in done.stderr


def test_client_addresses_are_passed_on_once(tmp_path):
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)
    binary = haproxy_env(tmp_path)["HAPROXY_BINARY"]
    for _ in range(2):  # Ray reloads HAProxy with the same file
        done = _run(config, HAPROXY_BINARY=binary)
        assert done.returncode == 0, done.stderr
    assert config.read_text().count("option forwardfor") == 1


def test_tls_on_the_http_frontend_with_a_certificate(tmp_path):
    pem = tmp_path / "server.pem"
    trustme.CA().issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG)
    binary = haproxy_env(tmp_path)["HAPROXY_BINARY"]
    done = _run(config, HAPROXY_BINARY=binary, SERVE_TLS_PEM=str(pem))
    assert done.returncode == 0, done.stderr  # HAProxy loaded the certificate and its key
    assert f"bind 127.0.0.1:18999 ssl crt {pem} alpn http/1.1" in config.read_text()
    plain = tmp_path / "plain.cfg"
    plain.write_text(CONFIG)
    assert _run(plain, HAPROXY_BINARY=binary).returncode == 0
    assert " ssl " not in plain.read_text()  # no certificate: plain HTTP, as by default


CLOSING_REQUEST_TAIL = "HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def _raw_request(port: int, request: bytes) -> bytes:
    """One request on a fresh connection; everything the server sends until it closes."""
    import socket
    import time

    deadline = time.monotonic() + 10
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "HAProxy never listened"
            time.sleep(0.05)
    with sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_the_front_door_takes_the_longest_request_the_api_documents(tmp_path):
    """A 2,048-character callback URL of 4-byte characters, percent-encoded, reaches the
    gateway (here a stand-in server) whole; only a request line past the buffer is refused,
    by HAProxy itself (its own 400 page: HAProxy 2.8 answers a request it could not parse
    with its built-in message, whatever `errorfile` says)."""
    import sys
    import urllib.parse

    from scripts.ingress import HAPROXY_BUFSIZE

    backend_port, front_port = free_port(), free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(backend_port), "--bind", "127.0.0.1"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp_path / "haproxy.cfg"
    # Ray writes `tune.bufsize` from RAY_SERVE_HAPROXY_TUNE_BUFSIZE, as haproxy_env sets it.
    config.write_text(
        CONFIG.replace("maxconn 64", f"maxconn 64\n    tune.bufsize {HAPROXY_BUFSIZE}")
        .replace("18999", str(front_port))
        .replace("127.0.0.1:1", f"127.0.0.1:{backend_port}")
    )
    binary = haproxy_env(tmp_path)["HAPROXY_BINARY"]
    front = subprocess.Popen(
        ["bash", str(WRAPPER), "-db", "-f", str(config)],
        env={**os.environ, "HAPROXY_BINARY": binary},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        longest = urllib.parse.quote("\U0010ffff" * 2048)
        assert len(longest) == 2048 * 12
        ok = _raw_request(
            front_port,
            f"GET /?callback_url={longest} {CLOSING_REQUEST_TAIL}".encode(),
        )
        assert ok.startswith(b"HTTP/1.0 200") or ok.startswith(b"HTTP/1.1 200"), ok[:200]
        refused = _raw_request(
            front_port,
            f"GET /?q={'x' * HAPROXY_BUFSIZE} {CLOSING_REQUEST_TAIL}".encode(),
        )
        assert refused.startswith(b"HTTP/1.1 400"), refused[:200]
    finally:
        front.kill()
        backend.kill()
        front.wait(10)
        backend.wait(10)
