#!/usr/bin/env bash
# Makes sure the local Redis and RabbitMQ answer, starting them if they are installed but down.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 6379; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! port_open 5672; then
  echo "starting RabbitMQ"
  rabbitmq-server -detached
fi
for _ in $(seq 1 60); do
  if port_open 6379 && port_open 5672; then exit 0; fi
  sleep 1
done
echo "Redis (6379) or RabbitMQ (5672) did not come up" >&2
exit 1
