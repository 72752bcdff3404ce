#!/usr/bin/env bash
# `make bench-overload`: a node (and a 3-node cluster) offered more than it sustains.
#   1. the sustained rate R: 50 rooms of 10, conclave-bench fanout --search (p99 < 100 ms,
#      nothing lost);
#   2. the overload curve: BENCH_OVERLOAD_FACTORS × R offered for BENCH_DURATION s each
#      (offered vs delivered deliveries/s, p99, messages the senders held back because
#      the server did not read them, sessions ended, peak RSS);
#   3. the recovery: 3 × R for 30 s, then R / 2 for 10 s with no pause between; the
#      seed scenario (a new room created and joined) runs 5 s into the second phase;
#      p99 of what was sent from 5 s into it, the node's lease, its writer's backlog.
# Senders use --backpressure drop: a message due while its socket is full is not sent
# (counted as held back), as an application waiting for its socket would do.
# Environment: BENCH_OVERLOAD_NODES (default "1 3"), BENCH_OVERLOAD_FACTORS (default
# "0.5 1 2 3 4"), BENCH_DURATION (default 10), BENCH_SERVER_BIN (the conclave binary to
# measure, default the release build: set it to an older build for "before"),
# BENCH_OVERLOAD_P99 (the search's p99 bound in ms, default 100: raise it on a machine
# whose idle cores wake slowly), BENCH_OVERLOAD_RATE_<N> (messages a second per room taken
# as the sustained rate of N nodes, instead of searching it: give two builds the same R).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
. "$root/deploy/bench/lib.sh"
db_start
node_counts="${BENCH_OVERLOAD_NODES:-1 3}"
factors="${BENCH_OVERLOAD_FACTORS:-0.5 1 2 3 4}"
duration="${BENCH_DURATION:-10}"
server_bin="${BENCH_SERVER_BIN:-$release/conclave}"
label="${BENCH_LABEL:-conclave}"
rooms=50 size=10
cleanup() {
    cluster_ down >/dev/null 2>&1
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$root/deploy/local/certs.sh" 3 >/dev/null || exit 1

# conclave_up (lib.sh), and its servers and pids as conclave-bench arguments.
up() {
    local server pid
    conclave_up "$1" || return 1
    args=()
    for server in $servers; do args+=(--server "$server"); done
    for pid in $pids; do args+=(--server-pid "$pid"); done
}

# "lease lost" lines in the logs of this run's nodes (node1 … node$nodes); when there are
# any, the logs are kept as $out/STEP-node$i.log (the next step's nodes start new ones).
leases() {
    local step=$1 i c n=0
    for ((i = 1; i <= nodes; i++)); do
        c=$(grep -c "lease lost" "$root/$cluster_dir/node$i.log" 2>/dev/null)
        n=$((n + ${c:-0}))
    done
    if [ "$n" != 0 ]; then
        for ((i = 1; i <= nodes; i++)); do cp "$root/$cluster_dir/node$i.log" "$out/$step-node$i.log" 2>/dev/null; done
    fi
    echo "$n"
}

# conclave-bench exits 2 when copies were lost or sessions ended (a result all the same);
# anything else, or no result file, ends the script rather than print an older result.
bench_ok() {
    local status=$1 file=$2
    if [ "$status" != 0 ] && [ "$status" != 2 ]; then echo "conclave-bench failed (status $status)" >&2; exit 1; fi
    [ -s "$file" ] || { echo "conclave-bench wrote no $file" >&2; exit 1; }
}

p99_limit="${BENCH_OVERLOAD_P99:-100}"
for nodes in $node_counts; do
    up "$nodes" || { echo "== $nodes node(s): could not start" >&2; exit 1; }
    eval "rate=\${BENCH_OVERLOAD_RATE_$nodes:-}"
    if [ -n "$rate" ]; then
        echo "== $label, $nodes node(s), $rooms rooms of $size: the sustained rate given (BENCH_OVERLOAD_RATE_$nodes)"
    else
        echo "== $label, $nodes node(s), $rooms rooms of $size: the sustained rate (p99 under $p99_limit ms)"
        rm -f "$out/overload-$label-$nodes-search.json"
        "$bench" fanout "${args[@]}" --rooms $rooms --room-size $size --rate 2 --duration 5 --warmup 1 --drain 1 --search --search-steps 2 \
            --p99-limit "$p99_limit" --join-probes 0 --quiet --label "$label-$nodes" --json "$out/overload-$label-$nodes-search.json" >/dev/null
        bench_ok $? "$out/overload-$label-$nodes-search.json"
        rate=$(python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(r['best']['ratePerRoom'] if r.get('best') else '')" \
            "$out/overload-$label-$nodes-search.json")
        [ -n "$rate" ] || { echo "no sustained rate found" >&2; exit 1; }
    fi
    echo "sustained: $rate msg/s per room ($(python3 -c "print(round($rate * $rooms * $size))") deliveries/s)"
    for factor in $factors; do
        up "$nodes" || exit 1
        r=$(python3 -c "print($rate * $factor)")
        rm -f "$out/overload-$label-$nodes-x$factor.json"
        "$bench" fanout "${args[@]}" --rooms $rooms --room-size $size --rate "$r" --duration "$duration" --warmup 1 --drain 3 \
            --backpressure drop --join-probes 0 --quiet --label "$label-$nodes-x$factor" \
            --json "$out/overload-$label-$nodes-x$factor.json" >/dev/null
        bench_ok $? "$out/overload-$label-$nodes-x$factor.json"
        python3 "$root/deploy/bench/overload_table.py" --factor "$factor" "$out/overload-$label-$nodes-x$factor.json" --leases "$(leases "overload-$label-$nodes-x$factor")"
    done
    up "$nodes" || exit 1
    seed=$(ls "$root"/../shared/seed/*.scs 2>/dev/null | head -1)
    [ -n "$seed" ] || seed="$root/spec/seed/muc_members_only_change.scs"
    "$release/conclave" user add-from-scripts "$seed" --database-url "$url" --log-level warning >/dev/null || exit 1
    spec="$release/conclave-spec"
    [ -x "$spec" ] || spec="$root/.build/debug/conclave-spec"
    rm -f "$out/overload-$label-$nodes-recovery.json"
    "$bench" fanout "${args[@]}" --rooms $rooms --room-size $size --rate "$(python3 -c "print($rate * 3)")" --duration 30 --warmup 1 --drain 5 \
        --then "$(python3 -c "print($rate / 2)"):10" --backpressure drop --join-probes 0 --quiet --label "$label-$nodes-recovery" \
        --during-phase 1 --during-at 5 \
        --during "'$spec' --node 127.0.0.1:17222 '$seed' >'$out/overload-$label-$nodes-seed.log' 2>&1" \
        --json "$out/overload-$label-$nodes-recovery.json" >/dev/null
    bench_ok $? "$out/overload-$label-$nodes-recovery.json"
    python3 "$root/deploy/bench/overload_table.py" --recovery "$out/overload-$label-$nodes-recovery.json" --leases "$(leases "overload-$label-$nodes-recovery")"
    curl -s "127.0.0.1:17225/metrics" | grep -E "^conclave_room_writer_backlog_(bytes|peak_bytes)|^conclave_room_write_batch_limit|^conclave_pressured_reads_total|^conclave_room_input_shed_total" || true
done
