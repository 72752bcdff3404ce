#!/usr/bin/env bash
# `make bench-scale`: does the cluster pay for itself? The same fan-out load against one
# Conclave node and against N nodes (BENCH_SCALE_NODES, default 3), every node held to the
# same CPU quota (BENCH_SCALE_CPU CPUs, default 0.25) by a cgroup of its own (cgroup v2
# cpu.max, or cpu.cfs_quota_us on cgroup v1: it must run as root), clients spread round
# robin over the nodes. Each run searches the highest rate sustained with nothing lost and
# p99 under 100 ms (conclave-bench fanout --search), then measures half of it. Printed per
# workload: capacity (deliveries/s) and server CPU per delivery for 1 and N nodes, and the
# scaling efficiency E(N) = capacity(N) / (N × capacity(1)).
# Workloads (BENCH_SCALE_WORKLOADS, default "10 100"): 10 is 30 rooms of 10, 100 is
# 6 rooms of 100, 1000 is 1 room of 1,000 — enough rooms that every node owns some.
# BENCH_SCALE_PERIOD: the quota's period in µs (default 10000: a node that used its
# share waits at most the rest of 10 ms, not of the kernel's default 100 ms, so that a
# message crossing three throttled nodes is not held up three times as long).
# Each node runs as many event loops as NIO would count in a container with that quota
# (the quota rounded up: 1 for 0.25 CPU; BENCH_SCALE_LOOPS), since it is put in its
# cgroup only after it started.
# BENCH_DURATION (s per phase, default 5), BENCH_STEPS (bisections, default 2).
# Results: .conclave/bench/scale-<nodes>-<workload>.json and scale.md.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
if [ "$(id -u)" != 0 ]; then
    echo "make bench-scale must run as root: it puts each node in a cgroup of its own with a CPU quota" >&2
    exit 1
fi
nodes_n="${BENCH_SCALE_NODES:-3}"
cpu="${BENCH_SCALE_CPU:-0.25}"
workloads="${BENCH_SCALE_WORKLOADS:-10 100}"
duration="${BENCH_DURATION:-5}"
steps="${BENCH_STEPS:-2}"
. "$root/deploy/bench/lib.sh"

# The cgroups: one per node, named conclave-scale-<i>.
period="${BENCH_SCALE_PERIOD:-10000}"
quota=$(python3 -c "print(int($cpu * $period))")
loops="${BENCH_SCALE_LOOPS:-$(python3 -c "import math; print(max(1, math.ceil($cpu)))")}"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
    cgroup_kind=v2
    cgroup_dir() { echo "/sys/fs/cgroup/conclave-scale-$1"; }
    if ! grep -qw cpu /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null; then
        echo "+cpu" >/sys/fs/cgroup/cgroup.subtree_control || { echo "cannot enable the cgroup cpu controller" >&2; exit 1; }
    fi
elif [ -d /sys/fs/cgroup/cpu ]; then
    cgroup_kind=v1
    cgroup_dir() { echo "/sys/fs/cgroup/cpu/conclave-scale-$1"; }
else
    echo "no cgroup cpu controller under /sys/fs/cgroup" >&2
    exit 1
fi
# Puts process $2 into node $1's cgroup, with the quota.
confine() {
    local dir
    dir=$(cgroup_dir "$1")
    mkdir -p "$dir" || return 1
    if [ "$cgroup_kind" = v2 ]; then
        [ -f "$dir/cpu.max" ] || { echo "no cpu.max in $dir: the cpu controller is not enabled" >&2; return 1; }
        echo "$quota $period" >"$dir/cpu.max" || return 1
    else
        echo "$period" >"$dir/cpu.cfs_period_us" && echo "$quota" >"$dir/cpu.cfs_quota_us" || return 1
    fi
    echo "$2" >"$dir/cgroup.procs"
}

db_start
cleanup() {
    local i
    cluster_ down >/dev/null 2>&1
    for ((i = 1; i <= nodes_n; i++)); do rmdir "$(cgroup_dir "$i")" 2>/dev/null; done
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$root/deploy/local/certs.sh" "$nodes_n" >/dev/null || exit 1

# One search: scale_run NODES WORKLOAD.
scale_run() {
    local nodes=$1 workload=$2 rooms size rate i=0 pid args=() server
    case "$workload" in
    10) rooms=30 size=10 rate=5 ;;
    100) rooms=6 size=100 rate=2 ;;
    1000) rooms=1 size=1000 rate=1 ;;
    *) echo "unknown workload $workload" >&2; return 1 ;;
    esac
    NIO_SINGLETON_GROUP_LOOP_COUNT=$loops conclave_up "$nodes" || { echo "== $nodes node(s): could not start" >&2; return 1; }
    for pid in $pids; do
        i=$((i + 1))
        confine "$i" "$pid" || { echo "cannot put node $i in its cgroup" >&2; return 1; }
        args+=(--server-pid "$pid")
    done
    for server in $servers; do args+=(--server "$server"); done
    echo "== $nodes node(s) of $cpu CPU each ($cgroup_kind cgroups, $loops event loop(s)), $rooms room(s) of $size"
    "$bench" fanout "${args[@]}" --rooms "$rooms" --room-size "$size" --rate "$rate" --duration "$duration" --warmup 1 --drain 1 \
        --search --search-steps "$steps" --join-probes 0 --quiet --label "conclave-$nodes" \
        --json "$out/scale-$nodes-$workload.json" >/dev/null || true
    python3 "$root/deploy/bench/table.py" --summary "$out/scale-$nodes-$workload.json"
    cluster_ down >/dev/null 2>&1
    grep -H "lease lost" "$root/$cluster_dir"/node*.log 2>/dev/null | sed "s|^|$nodes node(s), rooms of $workload: |"
}

[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$out"/scale-*.json
for workload in $workloads; do
    scale_run 1 "$workload"
    scale_run "$nodes_n" "$workload"
done
python3 "$root/deploy/bench/table.py" --scale "$out" "$nodes_n" "$cpu" "$workloads" | tee "$out/scale.md"
