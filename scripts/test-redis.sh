#!/usr/bin/env bash
# Makes sure a Redis server answers on 127.0.0.1:6379 for the tests (docs/redis.md): installs the Debian package
# redis-server when it is missing (as root) and starts a throwaway instance (no persistence) when none answers.
# Idempotent and silent when Redis already answers. `npm start` never runs this: Redis is optional.
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "test-redis: $*"; }

answers() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }

if answers; then
  say "redis answers on 127.0.0.1:6379"
  exit 0
fi

if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing the Debian package redis-server"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  else
    echo "test-redis: the tests need Redis on 127.0.0.1:6379; install it as root: apt-get install -y redis-server" >&2
    exit 1
  fi
fi

say "starting redis-server on 127.0.0.1:6379 (no persistence)"
redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save '' --appendonly no >/dev/null
for _ in $(seq 1 50); do
  answers && exit 0
  sleep 0.1
done
echo "test-redis: redis-server did not answer on 127.0.0.1:6379" >&2
exit 1
