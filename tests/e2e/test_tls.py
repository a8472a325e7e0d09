"""TLS at the front door: HAProxy, started by scripts/haproxy.sh with SERVE_TLS_PEM, serves the
live gateway over HTTPS with a throwaway certificate authority's certificate.

The HAProxy here runs the configuration Ray generated for this session's front door (its
routes and the gateway replica's address), on ports of its own, through the same wrapper Ray
runs: what `SERVE_TLS_PEM=... scripts/start.sh` gives, beside the session's plain port.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
import trustme

from tests.utils.e2e import wait_for
from tests.utils.net import free_port

ROOT = Path(__file__).resolve().parents[2]


def _session_config() -> str:
    """The HAProxy configuration Ray wrote for this session, on fresh ports, without the
    admin socket and state files of the HAProxy Ray runs."""
    run_dir = Path(os.environ["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]).parent
    [source] = list(run_dir.glob("**/haproxy.cfg"))
    kept = [
        line
        for line in source.read_text().splitlines()
        if not re.search(r"stats socket|server-state|metrics\.sock|log-format-sd", line)
    ]
    text = "\n".join(kept) + "\n"
    text = re.sub(r"(frontend http_frontend\n    bind )\S+", rf"\g<1>127.0.0.1:{free_port()}", text)
    text = re.sub(r"(frontend prometheus\n    bind )\S+", rf"\g<1>127.0.0.1:{free_port()}", text)
    return re.sub(r"(listen stats\n  bind )\S+", rf"\g<1>127.0.0.1:{free_port()}", text)


@pytest.fixture
def https_front_door(gateway_url, tmp_path):
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    server.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    config = tmp_path / "haproxy.cfg"
    config.write_text(_session_config())
    port = int(
        re.search(r"frontend http_frontend\n    bind 127\.0\.0\.1:(\d+)", config.read_text())[1]
    )
    process = subprocess.Popen(
        ["bash", str(ROOT / "scripts/haproxy.sh"), "-f", str(config), "-db"],
        env={**os.environ, "SERVE_TLS_PEM": str(pem)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        # The wrapper turned the plain frontend into a TLS one before starting HAProxy.
        wait_for(lambda: f"ssl crt {pem}" in config.read_text(), timeout=10, interval=0.05)

        def listening() -> bool:
            assert process.poll() is None, process.stderr.read().decode()
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, timeout=15, interval=0.1)
        yield f"https://127.0.0.1:{port}", str(ca_file)
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_https_with_the_cas_certificate_and_nothing_without_it(https_front_door, auth):
    url, ca_file = https_front_door
    headers = auth()
    with httpx.Client(base_url=url, verify=ca_file, timeout=10) as https:
        assert https.get("/health/live").status_code == 200
        models = https.get("/models", headers=headers)
        assert models.status_code == 200, models.text
        assert https.get("/models").status_code == 401  # the gateway itself answers
    # The same call without trusting the authority fails the handshake.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{url}/health/live", timeout=10)
    # Plain HTTP to the TLS port gets no answer from the gateway.
    plain = url.replace("https://", "http://")
    try:
        answer = httpx.get(f"{plain}/health/live", timeout=10)
    except httpx.HTTPError:
        return
    assert answer.status_code != 200, answer.text
