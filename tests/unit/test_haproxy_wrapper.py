"""scripts/haproxy.sh and scripts/ingress.py: the front door's own additions to Ray's HAProxy
(client addresses, TLS) and the environment that starts it, checked with HAProxy itself."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import trustme

from scripts.ingress import haproxy_env

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
