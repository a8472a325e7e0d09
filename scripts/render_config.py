"""Writes serve_config.yaml with this environment's addresses to OUT (default
.run/serve_config.yaml): APP_REDIS_URL and APP_AMQP_URL for every application (the x-env
block), SERVE_HTTP_HOST and SERVE_HTTP_PORT for Serve's HTTP bind, SERVE_GRPC_HOST,
SERVE_GRPC_PORT, SERVE_GRPC_TLS_CERT and SERVE_GRPC_TLS_KEY for the gateway's gRPC server
(the last two: PEM files, made absolute). Unset ones keep the file's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
# The gateway's gRPC settings, by the variable deploy.sh takes each from.
GATEWAY_GRPC = {
    "SERVE_GRPC_HOST": "APP_GRPC_HOST",
    "SERVE_GRPC_PORT": "APP_GRPC_PORT",
    "SERVE_GRPC_TLS_CERT": "APP_GRPC_TLS_CERT_FILE",
    "SERVE_GRPC_TLS_KEY": "APP_GRPC_TLS_KEY_FILE",
}


def render(config: dict, env: dict[str, str]) -> dict:
    for app in config.get("applications", []):
        variables = app.setdefault("runtime_env", {}).setdefault("env_vars", {})
        for name in ("APP_REDIS_URL", "APP_AMQP_URL"):
            if env.get(name):
                variables[name] = env[name]
        if app.get("name") == "gateway":
            for name, setting in GATEWAY_GRPC.items():
                if env.get(name):
                    value = env[name]
                    variables[setting] = str(Path(value).resolve()) if "TLS" in name else value
    http = config.setdefault("http_options", {})
    if env.get("SERVE_HTTP_HOST"):
        http["host"] = env["SERVE_HTTP_HOST"]
    if env.get("SERVE_HTTP_PORT"):
        http["port"] = int(env["SERVE_HTTP_PORT"])
    config.pop("x-env", None)  # resolved into each application above
    return config


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".run/serve_config.yaml"
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(render(config, dict(os.environ)), sort_keys=False))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
