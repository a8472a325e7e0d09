#!/usr/bin/env bash
# Sets up and runs the whole platform on this machine: a virtualenv with the project, a local
# Ray head (GCS on port 6390: Redis already has 6379), then `serve deploy serve_config.yaml`.
# Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672) must be running; they are started if
# installed and stopped. Waits until every application is RUNNING and prints the URLs.
set -euo pipefail
cd "$(dirname "$0")/.."

RAY_PORT="${RAY_PORT:-6390}"
DASHBOARD_PORT="${DASHBOARD_PORT:-8265}"
VENV="${VENV:-.venv}"

scripts/services.sh
scripts/install.sh
# shellcheck disable=SC1091
source "$VENV/bin/activate"

# Single-node mode keeps Ray on loopback instead of the machine's network address.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
# Ray's token authentication, for the cluster and for the CLI calls below alike; the token
# lives in ~/.ray/auth_token, generated on first use.
export RAY_AUTH_MODE=token
# The HTTP front door is Serve's HAProxy ingress (C, ~4x the requests per second of Serve's
# Python proxy here; benchmarks/RESULTS.md): HAProxy on port 8000, the gateway's replicas
# serving HTTP themselves behind it. SERVE_INGRESS=proxy keeps Serve's Python proxy.
# TLS: SERVE_TLS_PEM=/path/to/cert-and-key.pem makes HAProxy serve HTTPS only on that port
# (scripts/haproxy.sh); plain HTTP on loopback is the default. The gateway serves the Open
# Inference Protocol over gRPC on 127.0.0.1:8001 (SERVE_GRPC_HOST, SERVE_GRPC_PORT), over TLS
# only with SERVE_GRPC_TLS_CERT=/path/to/cert.pem SERVE_GRPC_TLS_KEY=/path/to/key.pem.
SCHEME=http
if [ "${SERVE_INGRESS:-haproxy}" = "haproxy" ]; then
  eval "$(python scripts/ingress.py "$PWD/.run/haproxy")"
  if [ -n "${SERVE_TLS_PEM:-}" ]; then
    [ -r "$SERVE_TLS_PEM" ] || { echo "SERVE_TLS_PEM=$SERVE_TLS_PEM is not a readable file" >&2; exit 1; }
    export SERVE_TLS_PEM="$(realpath "$SERVE_TLS_PEM")"
    SCHEME=https
  fi
fi
# Serve says a replica cannot be scheduled (no CPU left) after this long; scripts/deploy.sh
# stops waiting as soon as it does, with Serve's message.
export RAY_SERVE_SLOW_STARTUP_WARNING_S="${RAY_SERVE_SLOW_STARTUP_WARNING_S:-10}"
[ -s "$HOME/.ray/auth_token" ] || ray get-auth-token --generate >/dev/null
if ! ray status --address "127.0.0.1:${RAY_PORT}" >/dev/null 2>&1; then
  ray start --head --port "$RAY_PORT" --node-ip-address 127.0.0.1 \
    --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
    --metrics-export-port "${RAY_METRICS_PORT:-8080}" \
    --num-cpus "${RAY_NUM_CPUS:-$(nproc)}" --disable-usage-stats
fi

scripts/deploy.sh

cat <<MSG

Platform is up.
  Swagger UI:     ${SCHEME}://127.0.0.1:8000/docs
  Models:         ${SCHEME}://127.0.0.1:8000/models   (needs a bearer token: POST /register, /login)
  Metrics:        ${SCHEME}://127.0.0.1:8000/metrics
  gRPC (OIP v2):  ${SERVE_GRPC_HOST:-127.0.0.1}:${SERVE_GRPC_PORT:-8001}${SERVE_GRPC_TLS_CERT:+ (TLS)}
  Ray dashboard:  http://127.0.0.1:${DASHBOARD_PORT}   (token: ray get-auth-token)
Deploy changes to serve_config.yaml with scripts/deploy.sh; stop it all with scripts/stop.sh
MSG
