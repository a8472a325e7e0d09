#!/usr/bin/env bash
# Installs the project into .venv (if needed), makes sure Redis and RabbitMQ run, then runs the
# whole test suite: unit, integration (real Redis/RabbitMQ) and e2e (a local Ray Serve).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not e2e".
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
scripts/install.sh
# shellcheck disable=SC1091
source "${VENV:-.venv}/bin/activate"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
python -m pytest -p no:cacheprovider "$@"
