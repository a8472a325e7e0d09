#!/usr/bin/env bash
# Starts Prometheus (Debian's package; scripts/services.sh installs it) on 127.0.0.1:9090 with
# the shipped config and alert rules, scraping the platform that scripts/start.sh runs (the
# gateway's /metrics on :8000 and Ray's metrics on :8080). Its data goes to .data/prometheus.
#   scripts/monitoring.sh         start (or say it already runs)
#   scripts/monitoring.sh stop    stop it
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
PORT="${PROMETHEUS_PORT:-9090}"
DATA="$ROOT/.data/prometheus"
PIDFILE="$DATA/prometheus.pid"

running() { [ -s "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if [ "${1:-start}" = stop ]; then
  if running; then kill "$(cat "$PIDFILE")" && echo "Prometheus stopped"; fi
  rm -f "$PIDFILE"
  exit 0
fi

if running; then
  echo "Prometheus already runs: http://127.0.0.1:${PORT}/alerts"
  exit 0
fi
command -v prometheus >/dev/null || scripts/services.sh
mkdir -p "$DATA"
promtool check config monitoring/prometheus.yml >/dev/null
nohup prometheus --config.file=monitoring/prometheus.yml --storage.tsdb.path="$DATA" \
  --web.listen-address="127.0.0.1:${PORT}" >"$DATA/prometheus.log" 2>&1 &
echo $! >"$PIDFILE"
for _ in $(seq 1 30); do
  if curl -sf "http://127.0.0.1:${PORT}/-/ready" >/dev/null; then
    cat <<MSG
Prometheus is up (log: .data/prometheus/prometheus.log).
  Alerts:   http://127.0.0.1:${PORT}/alerts
  Targets:  http://127.0.0.1:${PORT}/targets
  Query:    http://127.0.0.1:${PORT}/graph?g0.expr=app_queue_messages
Grafana: provision monitoring/grafana (its datasource points at this Prometheus).
Stop it with: scripts/monitoring.sh stop
MSG
    exit 0
  fi
  sleep 1
done
echo "Prometheus did not become ready; see .data/prometheus/prometheus.log" >&2
exit 1
