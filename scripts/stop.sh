#!/usr/bin/env bash
# Stops the platform started by scripts/start.sh: deletes the Serve applications, stops Ray.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source "${VENV:-.venv}/bin/activate"
export RAY_AUTH_MODE=token
export RAY_ADDRESS="http://127.0.0.1:${DASHBOARD_PORT:-8265}"
serve shutdown --yes 2>/dev/null || true
ray stop --force
