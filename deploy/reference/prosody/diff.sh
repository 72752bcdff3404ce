#!/usr/bin/env bash
# `make diff-prosody`: conclave-diff against Prosody 0.12 (the reference) and Conclave.
# Starts Prosody (deploy/reference/prosody/lib.sh) and a local Conclave cluster of
# DIFF_NODES nodes (default 1; deploy/local/cluster.sh, ports from 17222) over the
# database conclave_diff of the embedded PostgreSQL — kept between runs, so each run
# meets the rooms and accounts earlier runs left — creates the six diff-* accounts on
# both, and runs DIFF_SCENARIOS scenarios (default 200) from DIFF_SEED (default random).
# Differences are written as .scs scripts to .conclave/diff/. DIFF_JOBS scenarios run at
# once (default 4; each job has its own six accounts). DIFF_OPTS adds options.
#   diff.sh record FILE   runs only Prosody and writes its transcripts to FILE
#   diff.sh replay FILE   compares Conclave with the transcripts of FILE (no Prosody)
set -uo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root" || exit 1
db="$root/deploy/local/db.sh"
cluster="$root/deploy/local/cluster.sh"
bin="${CONCLAVE_BIN:-$root/.build/debug/conclave}"
diff="${CONCLAVE_DIFF_BIN:-$root/.build/debug/conclave-diff}"
prosody_port="${CONCLAVE_PROSODY_PORT:-25232}"
port="${CONCLAVE_DIFF_PORT:-17222}"
count="${DIFF_NODES:-1}"
scenarios="${DIFF_SCENARIOS:-200}"
jobs="${DIFF_JOBS:-4}"
mode="${1:-compare}"
file="${2:-}"
case "$mode" in
    compare) ;;
    record | replay) [ -n "$file" ] || { echo "usage: $0 [record FILE | replay FILE]" >&2; exit 2; } ;;
    *) echo "usage: $0 [record FILE | replay FILE]" >&2; exit 2 ;;
esac
cluster_dir=".conclave/diff-cluster"
. "$root/deploy/reference/prosody/lib.sh"

case "$count" in '' | *[!0-9]* | 0) echo "DIFF_NODES must be a number of nodes, not '$count'" >&2; exit 2 ;; esac

# Without the per-user room limit (Prosody 0.12 has none): the reused database keeps
# every run's persistent rooms, and job 1's accounts come to own hundreds of them.
diff_cluster() {
    CONCLAVE_MUC_LIMITS_ROOMS_PER_USER=0 CONCLAVE_BIN="$bin" CONCLAVE_CLUSTER_DIR="$cluster_dir" CONCLAVE_CLUSTER_BASE_PORT="$port" \
        CONCLAVE_CLUSTER_DATABASE_URL="${url:-}" "$cluster" "$@"
}

started=0
cluster_up=0
cleanup() {
    prosody_stop
    [ "$cluster_up" = 1 ] && diff_cluster down >/dev/null
    [ "$started" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
if ! "$db" status >/dev/null 2>&1; then
    "$db" start >/dev/null || exit 1
    started=1
fi
diff_cluster down >/dev/null

accounts="$root/.conclave/diff-accounts.txt"
mkdir -p "$root/.conclave"
for ((job = 1; job <= jobs; job++)); do
    prefix=diff
    [ "$job" = 1 ] || prefix="diff$job"
    for letter in a b c d e f; do printf '%s-%s@localhost\tpassword\n' "$prefix" "$letter"; done
done >"$accounts"
options=(--jobs "$jobs")
[ -n "${DIFF_SEED:-}" ] && options+=(--seed "$DIFF_SEED")
if [ "$mode" = replay ]; then
    options+=(--replay "$file")
else
    prosody_start "$prosody_port" "$root/.conclave/diff-prosody" "$accounts" || exit 1
    options+=(--reference "127.0.0.1:$prosody_port" --scenarios "$scenarios")
fi
if [ "$mode" = record ]; then
    "$diff" "${options[@]}" --record "$file" ${DIFF_OPTS:-}
    exit
fi

url=$("$db" ensure conclave_diff) || exit 1
"$bin" user add-from-file --database-url "$url" --log-level warning "$accounts" >/dev/null || exit 1
cluster_up=1
diff_cluster up "$count" >/dev/null || exit 1
for ((i = 0; i < count; i++)); do options+=(--target "127.0.0.1:$((port + 10 * i))"); done
"$diff" "${options[@]}" ${DIFF_OPTS:-}
