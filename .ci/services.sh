#!/usr/bin/env bash
# Services and tools the test suite needs that a fresh machine does not have.
#
# PostgreSQL, for the store contract suite (tests/platform/test_store_contract.py):
# installed from Debian's packages if missing, one cluster on loopback, a
# database and user for the tests. The URL is written to $PG_URL_FILE, which the
# tests read (.ci/run calls this script in a subshell, so an export would not
# reach them). Idempotent: a second run finds everything in place and returns.
set -euo pipefail

PG_URL_FILE="${SHAREDML_TEST_POSTGRES_URL_FILE:-/tmp/sharedml-test-postgres-url}"
PG_PORT="${SHAREDML_TEST_POSTGRES_PORT:-5432}"
PG_USER=sharedml_test
PG_PASS=sharedml_test
PG_DB=sharedml_test

if [ "$(id -u)" -ne 0 ]; then
  echo "services.sh: not root, leaving PostgreSQL to the machine (postgres tests skip without it)"
  exit 0
fi

# iproute2, for the multi-host test (tests/deployment/test_multihost.py): network
# namespaces and veth links, one per host, made by the test itself.
missing=""
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$missing postgresql"
command -v ip >/dev/null 2>&1 || missing="$missing iproute2"
if [ -n "$missing" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086 # one word per package
  apt-get install -y -qq $missing >/dev/null
fi

PG_VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -q "^${PG_VERSION} main$"; then
  pg_createcluster "$PG_VERSION" main --port "$PG_PORT" >/dev/null
fi
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
  pg_ctlcluster "$PG_VERSION" main start -o "-c listen_addresses=127.0.0.1"
fi
PORT="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $3}')"

for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p $PORT" && break
  sleep 0.5
done

su postgres -c "psql -q -p $PORT -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'\"" | grep -q 1 ||
  su postgres -c "psql -q -p $PORT -c \"CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_PASS' CREATEDB\""
su postgres -c "psql -q -p $PORT -tAc \"SELECT 1 FROM pg_database WHERE datname='$PG_DB'\"" | grep -q 1 ||
  su postgres -c "createdb -p $PORT -O $PG_USER $PG_DB"

echo "postgresql+psycopg://$PG_USER:$PG_PASS@127.0.0.1:$PORT/$PG_DB" >"$PG_URL_FILE"
echo "services.sh: PostgreSQL $PG_VERSION on 127.0.0.1:$PORT (URL in $PG_URL_FILE)"
