#!/usr/bin/env bash
# Takes a screenshot of the running platform's Swagger UI into docs/swagger.png with
# Debian's headless Chromium (apt-get install chromium). Start the platform first
# (scripts/start.sh). Usage: scripts/screenshot_docs.sh [URL] [OUTPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
url="${1:-http://127.0.0.1:8000/docs}"
out="${2:-docs/swagger.png}"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1280,2200 --virtual-time-budget=15000 \
  --screenshot="$out" "$url"
echo "wrote $out"
