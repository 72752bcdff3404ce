#!/usr/bin/env bash
# `make bench-logins`: the server's CPU per login. One release node (database
# conclave_bench, 1,000 accounts with SCRAM keys), BENCH_LOGINS (default 500) logins with
# PLAIN (the node derives the password's keys: PBKDF2) and with SCRAM-SHA-1 (the client
# does), each without TLS and with STARTTLS; conclave-bench logins reads the node's CPU
# time from /proc before and after.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
count="${BENCH_LOGINS:-500}"
. "$root/deploy/bench/lib.sh"
db_start
cleanup() {
    cluster_ down >/dev/null 2>&1
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$root/deploy/local/certs.sh" 1 >/dev/null || exit 1
conclave_up 1 || { echo "could not start a node" >&2; exit 1; }
for mechanism in PLAIN SCRAM-SHA-1; do
    for tls in none starttls; do
        "$bench" logins --server $servers --server-pid $pids --count "$count" --mechanisms "$mechanism" --tls "$tls" --login-concurrency 8
    done
done
