#!/usr/bin/env bash
# Creates the virtualenv (VENV, default .venv) and installs the project with its test tools,
# the embedder example's PyTorch model and the benchmarks' peers (the suite smoke-runs them).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# PyTorch before what depends on it: the exact pin takes the CPU build, anything looser a CUDA one.
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -e ".[test,dev,embedder,bench]"
