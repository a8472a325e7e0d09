#!/usr/bin/env bash
# Regenerates protos/*_pb2.py(i) from protos/*.proto. Never edit the generated files by hand.
# Usage: scripts/gen_protos.sh [OUT_DIR]   (OUT_DIR defaults to the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-.}"
python -m grpc_tools.protoc -I . --python_out="$out" --pyi_out="$out" protos/*.proto
# The gRPC service stubs of the Open Inference Protocol (the only service the platform serves).
python -m grpc_tools.protoc -I . --grpc_python_out="$out" protos/grpc_predict_v2.proto
