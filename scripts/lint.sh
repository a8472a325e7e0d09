#!/usr/bin/env bash
# Static checks: ruff (lint and format) and mypy --strict over the project's own code.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source "${VENV:-.venv}/bin/activate"
ruff check .
ruff format --check .
mypy app deployments registry protos
