#!/usr/bin/env bash
# Applies serve_config.yaml to the running local platform (`serve deploy`) and waits until every
# application is RUNNING. Adding a model: add its entry to serve_config.yaml, run this again;
# the gateway keeps running.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source "${VENV:-.venv}/bin/activate"
export RAY_AUTH_MODE=token  # the same mode scripts/start.sh started Ray with
export RAY_ADDRESS="http://127.0.0.1:${DASHBOARD_PORT:-8265}"
# serve_config.yaml with this environment's addresses, if any are set (scripts/render_config.py).
serve deploy "$(python scripts/render_config.py)"
echo "waiting for the applications to be RUNNING..."
python scripts/wait_running.py --timeout "${START_TIMEOUT_S:-300}"
