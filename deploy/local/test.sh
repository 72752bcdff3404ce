#!/usr/bin/env bash
# `make test`: starts the embedded PostgreSQL if it is not running, gives the tests
# a fresh database, runs every test, and stops PostgreSQL again if it started it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
db="$root/deploy/local/db.sh"

started=0
if ! "$db" status >/dev/null 2>&1; then
    "$db" start
    started=1
fi
cleanup() { [ "$started" = 1 ] && "$db" stop; return 0; }
trap cleanup EXIT

export CONCLAVE_TEST_DATABASE_URL=$("$db" recreate conclave_test)
echo "tests use $CONCLAVE_TEST_DATABASE_URL"
swift test --skip-build 2>&1 | tee .conclave/test.log
status=${PIPESTATUS[0]}
exit "$status"
