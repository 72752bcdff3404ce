#!/usr/bin/env bash
# `make spec`: runs scansion scripts with conclave-spec against a freshly started
# local cluster of 3 nodes (deploy/local/cluster.sh; its own database, plaintext
# allowed on loopback), the clients of each script spread over the nodes.
#   deploy/local/spec.sh [SCRIPT-OR-DIR ...]     default: spec/ and ../shared/seed/
# Extra conclave-spec options go in $SPEC_OPTS (e.g. SPEC_OPTS=--verbose).
# CONCLAVE_SPEC_NODES: how many nodes (default 3); 1 runs a single node without any
# cluster (no link, no secret), as before the cluster, which helps when debugging.
# CONCLAVE_SPEC_PORT: the first node's STARTTLS port (default 15222; node i on +10*(i-1)).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
db="$root/deploy/local/db.sh"
cluster="$root/deploy/local/cluster.sh"
bin="${CONCLAVE_BIN:-$root/.build/debug/conclave}"
spec="${CONCLAVE_SPEC_BIN:-$root/.build/debug/conclave-spec}"
port="${CONCLAVE_SPEC_PORT:-15222}"
count="${CONCLAVE_SPEC_NODES:-3}"
state="$root/.conclave"
cluster_dir=".conclave/spec-cluster"

case "$count" in '' | *[!0-9]* | 0) echo "CONCLAVE_SPEC_NODES must be a number of nodes, not '$count'" >&2; exit 2 ;; esac

seed="$root/../shared/seed"
[ -d "$seed" ] || seed="$root/spec/seed"   # the copy, when ../shared is not next to the repository
if [ $# -gt 0 ]; then scripts=("$@"); else scripts=(spec "$seed"); fi

# cluster.sh with this run's directory (and, for `up`, its ports and database).
spec_cluster() {
    CONCLAVE_BIN="$bin" CONCLAVE_CLUSTER_DIR="$cluster_dir" CONCLAVE_CLUSTER_BASE_PORT="$port" \
        CONCLAVE_CLUSTER_DATABASE_URL="${url:-}" "$cluster" "$@"
}

started=0
if ! "$db" status >/dev/null 2>&1; then
    "$db" start >/dev/null || exit 1
    started=1
fi
node=""
cluster_up=0
cleanup() {
    if [ -n "$node" ]; then kill -TERM "$node" 2>/dev/null; wait "$node" 2>/dev/null; fi
    # Always bring the cluster down (it also cleans up after a failed `up`).
    [ "$cluster_up" = 1 ] && spec_cluster down >/dev/null
    [ "$started" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT

# Nodes a killed earlier run left behind would hold the ports and the database.
spec_cluster down >/dev/null

url=$("$db" recreate conclave_spec)
"$bin" user add-from-scripts --database-url "$url" --log-level warning "${scripts[@]}" || exit 1

"$root/deploy/local/cert.sh" localhost >/dev/null || exit 1
nodes=()
if [ "$count" = 1 ]; then
    # One node, no cluster.
    log="$state/spec-node.log"
    "$bin" serve --database-url "$url" --node-name spec1 --host 127.0.0.1 --port "$port" --direct-tls-port=-1 \
        --tls-certificate "$state/tls/localhost.crt" --tls-key "$state/tls/localhost.key" \
        --allow-plaintext-on-loopback --log-level info >"$log" 2>&1 &
    node=$!
    for _ in $(seq 1 200); do
        grep -q "node ready" "$log" && break
        kill -0 "$node" 2>/dev/null || { echo "the node did not start:" >&2; cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    echo "node spec1 on 127.0.0.1:$port (log: $log)"
    nodes=(--node "127.0.0.1:$port")
else
    # The cluster: cluster.sh waits until every node is ready, or prints the log of
    # the one that failed. The clients of a script go round robin over the nodes.
    cluster_up=1
    spec_cluster up "$count" >/dev/null || exit 1
    addresses=""
    for ((i = 0; i < count; i++)); do
        nodes+=(--node "127.0.0.1:$((port + 10 * i))")
        addresses="$addresses 127.0.0.1:$((port + 10 * i))"
    done
    echo "cluster of $count nodes:$addresses (logs: $cluster_dir/)"
fi
trust=()
[ "$count" = 1 ] || trust=(--ca-file "$state/tls/ca.crt")  # the cluster's nodes have CA-signed certificates
"$spec" "${nodes[@]}" "${trust[@]}" --junit "$state/spec-junit.xml" ${SPEC_OPTS:-} "${scripts[@]}"
