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
# Unit tests in parallel; then the integration tests one at a time: their nodes share
# one database, and so one cluster, and each test expects to know who is in it.
# Last, the multi-process cluster tests (real `conclave serve` processes, killed,
# paused, drained; one of them restarts PostgreSQL itself, so nothing else may run).
swift test --skip-build --skip IntegrationTests --skip ClusterProcessTests 2>&1 | tee .conclave/test.log
status=${PIPESTATUS[0]}
swift test --skip-build --filter IntegrationTests --no-parallel 2>&1 | tee -a .conclave/test.log
integration=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$integration
swift test --skip-build --filter ClusterProcessTests --no-parallel 2>&1 | tee -a .conclave/test.log
processes=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$processes
# The churn harness, short form (`make chaos` runs it for 30 minutes): 10 random steps
# over the database conclave_chaos, which earlier runs (of this and of `make chaos`) left
# behind. It prints its seed; `conclave-chaos --seed N --steps 10` replays a failure.
.build/debug/conclave-chaos --steps "${CONCLAVE_CHAOS_STEPS:-10}" 2>&1 | tee -a .conclave/test.log
chaos=${PIPESTATUS[0]}
[ "$status" = 0 ] && status=$chaos
exit "$status"
