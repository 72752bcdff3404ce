#!/usr/bin/env bash
# Where a Conclave node spends its CPU time while it fans out room messages: NODES release
# nodes (default 1; clients round robin over them), ROOMS rooms (default 1) of ROOM_SIZE
# occupants (default 100) each receiving RATE messages/s (default 200, i.e. 20,000
# deliveries/s) for DURATION s (default 10) from conclave-bench, and `perf record`
# (software clock, 999 samples/s, call graphs) on the nodes during the measured window. Prints the result of the run, the functions with the most samples of
# their own, and the share of a few parts of the path (TLS, system calls, the parser,
# serialization, the room, memory allocation); the profile stays in .conclave/profile/.
# Needs perf (apt-get install linux-perf) and `swift build -c release`.
# (valgrind 3.19's callgrind would count instructions instead, but it cannot read a Swift
# 6 binary's DWARF 5 and, without it, crashes as the node starts its threads.)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
release="$root/.build/release"
out="$root/.conclave/profile"
size="${ROOM_SIZE:-100}"
rate="${RATE:-200}"
duration="${DURATION:-10}"
nodes="${NODES:-1}"
rooms="${ROOMS:-1}"
db="$root/deploy/local/db.sh"
cluster="$root/deploy/local/cluster.sh"
command -v perf >/dev/null || { echo "perf is needed (apt-get install linux-perf)" >&2; exit 1; }
[ -x "$release/conclave" ] && [ -x "$release/conclave-bench" ] || { echo "build first: swift build -c release" >&2; exit 1; }
mkdir -p "$out"
started_db=0
if ! "$db" status >/dev/null 2>&1; then "$db" start >/dev/null; started_db=1; fi
url=$("$db" recreate conclave_profile 2>/dev/null)
"$release/conclave" migrate --database-url "$url" --log-level error >/dev/null
"$release/conclave-bench" accounts --count "$((size * rooms))" | "$release/conclave" user add-from-file - --database-url "$url" --log-level error >/dev/null 2>&1
cluster_() { CONCLAVE_CLUSTER_DIR=.conclave/profile/cluster "$cluster" "$@"; }
cleanup() {
    cluster_ down >/dev/null 2>&1 || true
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
# LOOPS: the nodes' event loops (NIO_SINGLETON_GROUP_LOOP_COUNT; default one per core).
node_env=()
[ -n "${LOOPS:-}" ] && node_env=(NIO_SINGLETON_GROUP_LOOP_COUNT="$LOOPS")
env "${node_env[@]}" CONCLAVE_BIN="$release/conclave" CONCLAVE_CLUSTER_BASE_PORT=18222 CONCLAVE_CLUSTER_DATABASE_URL="$url" \
    CONCLAVE_CLUSTER_DIR=.conclave/profile/cluster "$cluster" up "$nodes" >/dev/null
servers=() pidargs=() pids=""
for ((i = 1; i <= nodes; i++)); do
    servers+=(--server "127.0.0.1:$((18222 + 10 * (i - 1)))")
    pidargs+=(--server-pid "$(cat "$out/cluster/node$i.pid")")
    pids="$pids${pids:+,}$(cat "$out/cluster/node$i.pid")"
done
"$release/conclave-bench" fanout "${servers[@]}" --rooms "$rooms" --room-size "$size" --rate "$rate" \
    --duration "$duration" --warmup 1 --drain 2 --join-probes 0 --quiet --label profile "${pidargs[@]}" \
    --during "perf record -e cpu-clock -F 999 -g -o '$out/perf.data' -p $pids -- sleep $duration >/dev/null 2>&1" \
    --json "$out/fanout.json" || true
perf report -i "$out/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.7 2>/dev/null \
    | grep -v "^#" | grep -v "^$" | head -40 >"$out/self.txt"
perf report -i "$out/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12 >"$out/dso.txt"
perf report -i "$out/perf.data" --children --sort symbol --stdio -g none 2>/dev/null | grep -v "^#" | grep -v "^$" >"$out/children.txt"
demangle() { if command -v swift-demangle >/dev/null; then swift-demangle --simplified; else swift demangle --simplified 2>/dev/null || cat; fi; }
python3 - "$out/fanout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latencyMilliseconds"]
print(f"{r['deliveries']} copies in {r['durationSeconds']} s ({r['deliveriesPerSecond']:,.0f}/s), lost {r['lost']}, "
      f"p50 {lat.get('p50', 0):.2f} ms, p99 {lat.get('p99', 0):.2f} ms; server CPU {r.get('serverCPUMicrosecondsPerDelivery', 0):.1f} µs per delivery")
PY
echo "== by library (self samples)"
cat "$out/dso.txt"
echo "== functions with the most samples of their own"
demangle <"$out/self.txt"
