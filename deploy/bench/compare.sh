#!/usr/bin/env bash
# `make bench-compare`: the same conclave-bench workloads against every system that is
# here, one after the other, on loopback, and the table in docs/benchmarks.md.
#   Conclave, one node         always (release build; its own database conclave_bench)
#   Conclave, 3-node cluster   always (clients round robin over the nodes)
#   Prosody                    when `prosody` is installed (Debian: apt-get install prosody)
#   ejabberd                   not yet (see docs/benchmarks.md)
# Each system is started afresh for each workload and stopped after it.
# It installs nothing. Workloads (each: the highest rate sustained with nothing lost and
# p99 under 100 ms, then half of that rate): rooms of 10 (10 rooms) and a room of 100.
# Environment: BENCH_DURATION (s, default 5), BENCH_STEPS (bisections, default 2),
# BENCH_SYSTEMS (default "conclave conclave3 prosody"), BENCH_WRITE_DOC (default 1).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
db="$root/deploy/local/db.sh"
cluster="$root/deploy/local/cluster.sh"
release="$root/.build/release"
bench="$release/conclave-bench"
out="$root/.conclave/bench"
duration="${BENCH_DURATION:-5}"
steps="${BENCH_STEPS:-2}"
systems="${BENCH_SYSTEMS:-conclave conclave3 prosody}"
accounts=100
mkdir -p "$out"
[ -x "$bench" ] && [ -x "$release/conclave" ] || { echo "build first: swift build -c release" >&2; exit 1; }

started_db=0
if ! "$db" status >/dev/null 2>&1; then "$db" start >/dev/null || exit 1; started_db=1; fi
prosody_pid=""
cleanup() {
    CONCLAVE_CLUSTER_DIR=.conclave/bench-cluster "$cluster" down >/dev/null 2>&1
    [ -n "$prosody_pid" ] && kill "$prosody_pid" 2>/dev/null
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT

# The workload of $workload (10: ten rooms of 10; 100: one room of 100) against one
# freshly started system: workload SYSTEM SERVERS PIDS.
workloads() {
    local system=$1 servers=$2 pids=$3 args=() server pid
    for server in $servers; do args+=(--server "$server"); done
    for pid in $pids; do args+=(--server-pid "$pid"); done
    if [ "$workload" = 10 ]; then
        echo "== $system: rooms of 10"
        "$bench" fanout "${args[@]}" --rooms 10 --room-size 10 --rate 50 --duration "$duration" --warmup 1 --drain 1 \
            --search --search-steps "$steps" --quiet --label "$system" --json "$out/$system-10.json" || true
    else
        echo "== $system: a room of 100"
        "$bench" fanout "${args[@]}" --rooms 1 --room-size 100 --rate 25 --duration "$duration" --warmup 1 --drain 1 \
            --search --search-steps "$steps" --quiet --label "$system" --json "$out/$system-100.json" || true
    fi
}

conclave() {
    local nodes=$1 system=$2 url servers="" pids="" i
    CONCLAVE_CLUSTER_DIR=.conclave/bench-cluster "$cluster" down >/dev/null 2>&1
    url=$("$db" recreate conclave_bench 2>/dev/null)
    "$release/conclave" migrate --database-url "$url" --log-level warning >/dev/null || return 1
    "$bench" accounts --count "$accounts" | "$release/conclave" user add-from-file - --database-url "$url" --log-level warning || return 1
    CONCLAVE_BIN="$release/conclave" CONCLAVE_CLUSTER_DIR=.conclave/bench-cluster CONCLAVE_CLUSTER_BASE_PORT=17222 \
        CONCLAVE_CLUSTER_DATABASE_URL="$url" "$cluster" up "$nodes" >/dev/null || return 1
    for ((i = 0; i < nodes; i++)); do
        servers="$servers 127.0.0.1:$((17222 + 10 * i))"
        pids="$pids $(cat "$root/.conclave/bench-cluster/node$((i + 1)).pid")"
    done
    workloads "$system" "$servers" "$pids"
    CONCLAVE_CLUSTER_DIR=.conclave/bench-cluster "$cluster" down >/dev/null 2>&1
}

prosody_run() {
    command -v prosody >/dev/null || { echo "== prosody: not installed (apt-get install prosody): skipped"; return 0; }
    local dir="$root/.conclave/bench-prosody" i
    rm -rf "$dir" && mkdir -p "$dir/data"
    "$root/deploy/local/cert.sh" localhost >/dev/null
    cp "$root/.conclave/tls/localhost.crt" "$root/.conclave/tls/localhost.key" "$dir/"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|25322|g" -e "s|@CERT@|$dir/localhost.crt|g" -e "s|@KEY@|$dir/localhost.key|g" \
        "$root/deploy/reference/prosody/prosody.cfg.lua.in" >"$dir/prosody.cfg.lua"
    as_prosody() { if [ "$(id -u)" = 0 ]; then chown -R prosody "$dir"; runuser -u prosody -- "$@"; else "$@"; fi; }
    for ((i = 1; i <= accounts; i++)); do
        as_prosody prosodyctl --config "$dir/prosody.cfg.lua" register "bench$i" localhost bench >/dev/null 2>&1
    done
    as_prosody prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
    for _ in $(seq 1 100); do [ -s "$dir/prosody.pid" ] && break; sleep 0.1; done
    prosody_pid=$(cat "$dir/prosody.pid")
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/25322) 2>/dev/null && break; sleep 0.1; done
    workloads prosody "127.0.0.1:25322" "$prosody_pid"
    kill "$prosody_pid" 2>/dev/null
    prosody_pid=""
}

# Each system starts afresh for each workload (so memory per session is a first run's).
rm -f "$out"/*.json
for workload in 10 100; do
    for system in $systems; do
        case "$system" in
        conclave) conclave 1 conclave ;;
        conclave3) conclave 3 conclave3 ;;
        prosody) prosody_run ;;
        *) echo "unknown system $system" >&2 ;;
        esac
    done
done
echo "== ejabberd: not supported by this script yet: skipped"

# The table: one row per system and room size, from the JSON files.
python3 "$root/deploy/bench/table.py" "$out" "$duration" >"$out/table.md" || exit 1
cat "$out/table.md"
if [ "${BENCH_WRITE_DOC:-1}" = 1 ]; then
    python3 "$root/deploy/bench/table.py" --into "$root/docs/benchmarks.md" "$out/table.md"
    echo "written into docs/benchmarks.md"
fi
