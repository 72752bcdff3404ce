#!/usr/bin/env bash
# `make bench-compare`: the same conclave-bench workloads against every system that is
# here, on loopback, and the tables in docs/benchmarks.md.
#   conclave    a Conclave node (release build; its own database conclave_bench)
#   conclave3   a 3-node Conclave cluster (clients round robin over the nodes)
#   prosody     Prosody, when `prosody` is installed (Debian: apt-get install prosody)
#   ejabberd    ejabberd, when `ejabberdctl` is installed (Debian: apt-get install ejabberd)
# It installs nothing. Every system gets the same accounts (SCRAM, password "bench"), the
# same certificate (node1's from deploy/local/certs.sh; STARTTLS offered, not required), MUC at conference.localhost without
# archive, no traffic shaping; each is started afresh for each run of each workload, so
# its memory is that of a first run.
# Workloads: ten rooms of 10, one room of 100, one room of 1,000. Each run searches the
# highest rate sustained with nothing lost and p99 under 100 ms, then measures half of it
# (conclave-bench fanout --search); the table holds the median of BENCH_RUNS runs.
# With conclave3 also: the kick latency across nodes (conclave-bench kick) and a node
# joining a loaded 2-node cluster (conclave-bench fanout --during 'cluster.sh add').
# Environment: BENCH_RUNS (default 3), BENCH_DURATION (s per phase, default 5),
# BENCH_STEPS (bisections, default 2), BENCH_SYSTEMS (default "conclave conclave3 prosody
# ejabberd"), BENCH_WORKLOADS (default "10 100 1000"), BENCH_WRITE_DOC (default 1),
# BENCH_KEEP (1: keep the results of earlier runs in .conclave/bench).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
. "$root/deploy/bench/lib.sh"
db_start
runs="${BENCH_RUNS:-3}"
duration="${BENCH_DURATION:-5}"
steps="${BENCH_STEPS:-2}"
systems="${BENCH_SYSTEMS:-conclave conclave3 prosody ejabberd}"
workloads="${BENCH_WORKLOADS:-10 100 1000}"

prosody_pid=""
ejabberd_dir="$root/.conclave/bench-ejabberd"
ejabberd_up=0
# As root: ejabberd's user through setpriv, not su, whose PAM session would bring the
# limit of open files back to 1,024 (too few for 1,000 sessions: "too many open files").
ejabberdctl_() {
    local as=()
    [ "$(id -u)" = 0 ] && as=(env HOME=/var/lib/ejabberd setpriv --reuid=ejabberd --regid=ejabberd --init-groups)
    (
        ulimit -n 65536 2>/dev/null || true
        "${as[@]}" ejabberdctl --config "$ejabberd_dir/ejabberd.yml" --ctl-config "$ejabberd_dir/ejabberdctl.cfg" \
            --spool "$ejabberd_dir/spool" --logs "$ejabberd_dir/logs" "$@"
    )
}
cleanup() {
    cluster_ down >/dev/null 2>&1
    [ -n "$prosody_pid" ] && kill "$prosody_pid" 2>/dev/null
    [ "$ejabberd_up" = 1 ] && ejabberdctl_ stop >/dev/null 2>&1
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# As the system's own user when run as root (Prosody and ejabberd refuse root, and
# their Debian packages own their files).
as_user() {
    local user=$1 dir=$2
    shift 2
    if [ "$(id -u)" = 0 ]; then chown -R "$user" "$dir"; runuser -u "$user" -- "$@"; else "$@"; fi
}

# One search of workload $workload against a system that is up: search SYSTEM RUN SERVERS PIDS.
search() {
    local system=$1 run=$2 servers=$3 pids=$4 args=() server pid rooms size rate
    for server in $servers; do args+=(--server "$server"); done
    for pid in $pids; do args+=(--server-pid "$pid"); done
    case "$workload" in
    10) rooms=10 size=10 rate=50 ;;
    100) rooms=1 size=100 rate=50 ;;
    1000) rooms=1 size=1000 rate=5 ;;
    *) echo "unknown workload $workload" >&2; return 1 ;;
    esac
    echo "== $system, rooms of $workload, run $run"
    "$bench" fanout "${args[@]}" --rooms "$rooms" --room-size "$size" --rate "$rate" --duration "$duration" --warmup 1 --drain 1 \
        --search --search-steps "$steps" --quiet --label "$system" --json "$out/$system-$workload-$run.json" >/dev/null || true
    python3 "$root/deploy/bench/table.py" --summary "$out/$system-$workload-$run.json"
}

conclave_run() {
    local nodes=$1 system=$2 run=$3 servers pids url
    conclave_up "$nodes" || { echo "== $system: could not start" >&2; return 1; }
    search "$system" "$run" "$servers" "$pids"
    cluster_ down >/dev/null 2>&1
    # A node that lost its lease under the load says so in its log.
    grep -H "lease lost" "$root/$cluster_dir"/node*.log 2>/dev/null | sed "s|^|$system rooms of $workload run $run: |" >>"$out/lease-lost.log"
}

prosody_run() {
    local run=$1 dir="$root/.conclave/bench-prosody" i
    command -v prosody >/dev/null || { echo "== prosody: not installed (apt-get install prosody): skipped"; return 0; }
    rm -rf "$dir" && mkdir -p "$dir/data"
    cat "$tls/node1.crt" "$tls/ca.crt" >"$dir/server.crt"
    cp "$tls/node1.key" "$dir/server.key"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|25322|g" -e "s|@CERT@|$dir/server.crt|g" -e "s|@KEY@|$dir/server.key|g" \
        "$root/deploy/reference/prosody/prosody.cfg.lua.in" >"$dir/prosody.cfg.lua"
    # One account registered by prosodyctl; the others are copies of its file (the
    # SCRAM keys depend on the password and salt only, and every user has the same).
    as_user prosody "$dir" prosodyctl --config "$dir/prosody.cfg.lua" register bench1 localhost bench >/dev/null 2>&1
    for ((i = 2; i <= accounts; i++)); do cp "$dir/data/localhost/accounts/bench1.dat" "$dir/data/localhost/accounts/bench$i.dat"; done
    as_user prosody "$dir" prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
    for _ in $(seq 1 100); do [ -s "$dir/prosody.pid" ] && break; sleep 0.1; done
    prosody_pid=$(cat "$dir/prosody.pid")
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/25322) 2>/dev/null && break; sleep 0.1; done
    search prosody "$run" "127.0.0.1:25322" "$prosody_pid"
    kill "$prosody_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$prosody_pid" 2>/dev/null || break; sleep 0.1; done
    prosody_pid=""
}

# ejabberd's accounts are imported once (XEP-0227 file) into a spool that each run
# starts from a copy of.
ejabberd_prepare() {
    local i
    rm -rf "$ejabberd_dir" && mkdir -p "$ejabberd_dir/spool" "$ejabberd_dir/logs"
    cat "$tls/node1.crt" "$tls/ca.crt" "$tls/node1.key" >"$ejabberd_dir/cert.pem"
    sed -e "s|@PORT@|25422|g" -e "s|@CERT@|$ejabberd_dir/cert.pem|g" \
        "$root/deploy/reference/ejabberd/ejabberd.yml.in" >"$ejabberd_dir/ejabberd.yml"
    echo "ERLANG_NODE=conclavebench@localhost" >"$ejabberd_dir/ejabberdctl.cfg"
    {
        echo "<?xml version='1.0' encoding='UTF-8'?>"
        echo "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>"
        for ((i = 1; i <= accounts; i++)); do echo "<user name='bench$i' password='bench'/>"; done
        echo "</host></server-data>"
    } >"$ejabberd_dir/users.xml"
    [ "$(id -u)" = 0 ] && chown -R ejabberd "$ejabberd_dir"
    ejabberd_start || return 1
    ejabberdctl_ import_piefxis "$ejabberd_dir/users.xml" >/dev/null || return 1
    ejabberd_stop
    cp -a "$ejabberd_dir/spool" "$ejabberd_dir/spool.accounts"
}

ejabberd_start() {
    ejabberdctl_ start >/dev/null || return 1
    ejabberdctl_ started >/dev/null || return 1
    ejabberd_up=1
    for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/25422) 2>/dev/null && return 0; sleep 0.1; done
    echo "ejabberd does not listen on 25422: see $ejabberd_dir/logs" >&2
    return 1
}

ejabberd_stop() {
    ejabberdctl_ stop >/dev/null 2>&1
    ejabberdctl_ stopped >/dev/null 2>&1
    ejabberd_up=0
}

ejabberd_run() {
    local run=$1 pid
    command -v ejabberdctl >/dev/null || { echo "== ejabberd: not installed (apt-get install ejabberd): skipped"; return 0; }
    if [ ! -d "$ejabberd_dir/spool.accounts" ]; then ejabberd_prepare || { echo "== ejabberd: could not prepare" >&2; return 1; }; fi
    rm -rf "$ejabberd_dir/spool" && cp -a "$ejabberd_dir/spool.accounts" "$ejabberd_dir/spool"
    ejabberd_start || { echo "== ejabberd: could not start" >&2; return 1; }
    pid=$(pgrep -f "beam.smp.*conclavebench@localhost" | head -1)
    search ejabberd "$run" "127.0.0.1:25422" "$pid"
    ejabberd_stop
}

# The cluster's own figures: the kick across nodes, and a node joining under load.
cluster_figures() {
    local run=$1 servers pids url
    echo "== conclave3: kick latency across nodes, run $run"
    conclave_up 3 || return 1
    "$bench" kick $(for s in $servers; do echo --server "$s"; done) --database-url "$url" --kicks 30 \
        --json "$out/kick-$run.json" || true
    cluster_ down >/dev/null 2>&1
    echo "== conclave: node3 joins 2 nodes carrying 100 rooms of 10 (2,000 deliveries/s), run $run"
    conclave_up 2 || return 1
    "$bench" fanout $(for s in $servers; do echo --server "$s"; done) --rooms 100 --room-size 10 --rate 2 \
        --duration 16 --warmup 1 --drain 3 --join-probes 0 --quiet --label node-join \
        --during "CONCLAVE_BIN='$release/conclave' CONCLAVE_CLUSTER_DIR=$cluster_dir CONCLAVE_CLUSTER_BASE_PORT=17222 '$cluster' add >/dev/null" \
        --during-at 5 --json "$out/join-$run.json" >/dev/null || true
    # The rooms the new node took over.
    CONCLAVE_PG_DATABASE=conclave_bench "$db" psql -tAc "SELECT count(*) FROM room_owners WHERE node = 'node3'" 2>/dev/null \
        | python3 "$root/deploy/bench/table.py" --record-rooms "$out/join-$run.json"
    python3 "$root/deploy/bench/table.py" --summary "$out/join-$run.json"
    cluster_ down >/dev/null 2>&1
}

# One certificate for every system: node1's, signed by the local CA (deploy/local/certs.sh).
tls="${CONCLAVE_TLS_DIR:-$root/.conclave/tls}"
"$root/deploy/local/certs.sh" 3 >/dev/null || exit 1
# BENCH_KEEP=1 keeps the results of earlier runs (to run one system or workload again).
[ "${BENCH_KEEP:-0}" = 1 ] || rm -f "$out"/*.json "$out/lease-lost.log"
rm -rf "$ejabberd_dir/spool.accounts"
started=$(date +%s)
for workload in $workloads; do
    for ((run = 1; run <= runs; run++)); do
        for system in $systems; do
            case "$system" in
            conclave) conclave_run 1 conclave "$run" ;;
            conclave3) conclave_run 3 conclave3 "$run" ;;
            prosody) prosody_run "$run" ;;
            ejabberd) ejabberd_run "$run" ;;
            *) echo "unknown system $system" >&2 ;;
            esac
        done
    done
done
case " $systems " in
*" conclave3 "*) for ((run = 1; run <= runs; run++)); do cluster_figures "$run"; done ;;
esac
echo "== all runs took $(($(date +%s) - started)) s"
[ -s "$out/lease-lost.log" ] && { echo "== Conclave nodes that lost their lease under load:"; cat "$out/lease-lost.log"; }

# The tables: medians over the runs, from the JSON files.
python3 "$root/deploy/bench/table.py" --table "$out" "$duration" "$runs" >"$out/table.md" || exit 1
cat "$out/table.md"
if [ "${BENCH_WRITE_DOC:-1}" = 1 ]; then
    python3 "$root/deploy/bench/table.py" --into "$root/docs/benchmarks.md" "$out/table.md"
    echo "written into docs/benchmarks.md"
fi
