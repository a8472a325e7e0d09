#!/usr/bin/env bash
# Makes sure Redis (127.0.0.1:6379) and RabbitMQ (127.0.0.1:5672) answer, and that Prometheus's
# promtool, wrk and kubectl are installed. A service already
# answering is left alone. One that does not is started, after being installed with the system
# package manager if missing (Debian/Ubuntu, as root; otherwise this says what to run).
# Redis started here keeps its data (user accounts) in .data/redis with append-only
# persistence (scripts/redis.conf).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

missing=()
if ! port_open 6379 && ! command -v redis-server >/dev/null; then missing+=(redis-server); fi
if ! port_open 5672 && ! command -v rabbitmq-server >/dev/null; then missing+=(rabbitmq-server); fi
# Prometheus (and its promtool, which the tests use on the alert rules): scripts/monitoring.sh.
optional=()
if ! command -v promtool >/dev/null; then optional+=(prometheus); fi
# wrk: the benchmarks' load generator (python -m benchmarks.run).
if ! command -v wrk >/dev/null; then optional+=(wrk); fi
# kubectl: renders deploy/kubernetes (kustomize) for the manifest tests.
if ! command -v kubectl >/dev/null; then optional+=(kubectl); fi
if [ "$((${#missing[@]} + ${#optional[@]}))" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} ${optional[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" "${optional[@]}"
  elif [ "${#missing[@]}" -gt 0 ]; then
    echo "Not installed: ${missing[*]} ${optional[*]}. Install with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]} ${optional[*]}" >&2
    exit 1
  else
    echo "Prometheus is not installed (the alert-rule tests and scripts/monitoring.sh need it):" >&2
    echo "  sudo apt-get update && sudo apt-get install -y prometheus" >&2
  fi
fi

if ! port_open 6379; then
  echo "starting Redis (data in .data/redis)"
  mkdir -p .data/redis
  redis-server scripts/redis.conf --daemonize yes --bind 127.0.0.1 -::1 --port 6379 \
    --dir "$ROOT/.data/redis" --logfile "$ROOT/.data/redis/redis.log"
fi
if ! port_open 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
fi
for _ in $(seq 1 90); do
  if port_open 6379 && port_open 5672; then exit 0; fi
  sleep 1
done
echo "Redis (6379) or RabbitMQ (5672) did not come up" >&2
exit 1
