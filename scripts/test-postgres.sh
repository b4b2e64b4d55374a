#!/usr/bin/env bash
# Makes sure PostgreSQL answers on 127.0.0.1:5432 for the store contract tests (docs/store.md): installs the
# Debian package postgresql when it is missing (as root) and starts its cluster when none answers. The tests
# create and drop their own databases. Idempotent and silent when PostgreSQL already answers. `npm start`
# never runs this: PostgreSQL is optional.
set -euo pipefail
cd "$(dirname "$0")/.."

quiet=0
[ "${1:-}" = "--quiet" ] && quiet=1
say() { [ "$quiet" = 1 ] || echo "test-postgres: $*"; }

answers() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }

if answers; then
  say "postgresql answers on 127.0.0.1:5432"
  exit 0
fi

if ! command -v pg_ctlcluster >/dev/null || ! command -v createdb >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing the Debian package postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
  else
    echo "test-postgres: the tests need PostgreSQL on 127.0.0.1:5432; install it as root: apt-get install -y postgresql" >&2
    exit 1
  fi
fi

# The first cluster Debian knows of (pg_lsclusters: version, name, ...); created when there is none.
read -r version cluster _ < <(pg_lsclusters --no-header 2>/dev/null | head -n 1) || true
if [ -z "${version:-}" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
  cluster=main
  say "creating the cluster $version/$cluster"
  pg_createcluster "$version" "$cluster" >/dev/null
fi
say "starting the cluster $version/$cluster"
pg_ctlcluster "$version" "$cluster" start || true

for _ in $(seq 1 50); do
  answers && break
  sleep 0.2
done
if ! answers; then
  echo "test-postgres: PostgreSQL $version/$cluster did not start; see /var/log/postgresql/" >&2
  exit 1
fi

# The tests connect without a password (trust on loopback) as PGUSER, or postgres.
user=${PGUSER:-postgres}
if ! psql -h 127.0.0.1 -U "$user" -d postgres -Atqc 'SELECT 1' >/dev/null 2>&1; then
  echo "test-postgres: PostgreSQL answers but refuses $user on 127.0.0.1 without a password;" \
    "allow it (pg_hba.conf: host all all 127.0.0.1/32 trust) or set PGUSER/PGPASSWORD" >&2
  exit 1
fi
say "postgresql answers on 127.0.0.1:5432"
