#!/usr/bin/env bash
# `make dns-test` (part of `make test`): clients find a local 3-node cluster through DNS
# SRV records only. dnsmasq serves, on 127.0.0.1:$CONCLAVE_DNS_PORT, records for the
# domain localhost that point at the three nodes (node3 with twice the weight of the
# others), and conclave-spec runs with --domain localhost --dns-server, verifying the
# nodes' certificates against the local CA:
#   1. spec/ and the seed, every connection making its own weighted choice: everything
#      passes, every node gets connections, node3 more than each of the others;
#   2. the seed with its clients spread: they connect to two different nodes;
#   3. node2 stopped: the seed and spec/ still pass, node2's records are refused and
#      the clients take the next ones.
#   deploy/local/dns-test.sh [SCRIPT-OR-DIR ...]     default: spec/ and the seed
# Needs dnsmasq (Debian: apt-get install dnsmasq).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
db="$root/deploy/local/db.sh"
cluster="$root/deploy/local/cluster.sh"
bin="${CONCLAVE_BIN:-$root/.build/debug/conclave}"
spec="${CONCLAVE_SPEC_BIN:-$root/.build/debug/conclave-spec}"
port="${CONCLAVE_DNS_TEST_PORT:-16222}"   # node1's STARTTLS port; node i on +10*(i-1)
dns_port="${CONCLAVE_DNS_PORT:-16053}"
state="$root/.conclave"
cluster_dir=".conclave/dns-cluster"

seed="$root/../shared/seed"
[ -d "$seed" ] || seed="$root/spec/seed"
if [ $# -gt 0 ]; then scripts=("$@"); else scripts=(spec "$seed"); fi
seed_script="$seed/muc_members_only_change.scs"

if ! command -v dnsmasq >/dev/null && [ ! -x /usr/sbin/dnsmasq ] && [ ! -x /sbin/dnsmasq ]; then
    echo "dns-test: dnsmasq is needed (Debian: apt-get install dnsmasq)" >&2
    exit 1
fi

dns_cluster() {
    CONCLAVE_BIN="$bin" CONCLAVE_CLUSTER_DIR="$cluster_dir" CONCLAVE_CLUSTER_BASE_PORT="$port" \
        CONCLAVE_CLUSTER_DATABASE_URL="${url:-}" "$cluster" "$@"
}

started=0
dns_started=0
cluster_up=0
cleanup() {
    [ "$dns_started" = 1 ] && CONCLAVE_CLUSTER_DIR="$cluster_dir" "$root/deploy/local/dns.sh" stop >/dev/null
    [ "$cluster_up" = 1 ] && dns_cluster down >/dev/null
    [ "$started" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
if ! "$db" status >/dev/null 2>&1; then
    "$db" start >/dev/null || exit 1
    started=1
fi
dns_cluster down >/dev/null
url=$("$db" recreate conclave_dns)
"$bin" user add-from-scripts --database-url "$url" --log-level warning "${scripts[@]}" "$seed_script" >/dev/null || exit 1
cluster_up=1
dns_cluster up 3 >/dev/null || exit 1

# The zone (deploy/local/dns.sh): Direct TLS and STARTTLS records of equal priority for
# each node (clients prefer Direct TLS), weights 1, 1, 2; the node names resolve to
# 127.0.0.1.
CONCLAVE_CLUSTER_DIR="$cluster_dir" CONCLAVE_DNS_PORT="$dns_port" CONCLAVE_DNS_WEIGHTS="1 1 2" \
    "$root/deploy/local/dns.sh" start || exit 1
dns_started=1

run_spec() {
    local out=$1
    shift
    "$spec" --domain localhost --dns-server "127.0.0.1:$dns_port" --ca-file "$state/tls/ca.crt" "$@" | tee "$out"
    return "${PIPESTATUS[0]}"
}
# Connections (or refusals) of node $2's Direct TLS endpoint in the summary file $1.
count() {
    local line
    line=$(grep -E "^  node$2\.localhost:$((port + 10 * ($2 - 1) + 1)) \(Direct TLS\)" "$1")
    case "$3" in
    connections) echo "$line" | sed -nE 's/.*: ([0-9]+) connections?.*/\1/p' | grep . || echo 0 ;;
    refused) echo "$line" | sed -nE 's/.* ([0-9]+) refused.*/\1/p' | grep . || echo 0 ;;
    esac
}
fail() { echo "dns-test: FAILED: $*" >&2; exit 1; }

echo "== 1. spec/ and the seed through SRV, each connection choosing by weight"
run_spec "$state/dns-test-1.txt" --no-spread --srv-seed 1 "${scripts[@]}" || fail "scripts failed through SRV"
c1=$(count "$state/dns-test-1.txt" 1 connections)
c2=$(count "$state/dns-test-1.txt" 2 connections)
c3=$(count "$state/dns-test-1.txt" 3 connections)
[ "$c1" -gt 0 ] && [ "$c2" -gt 0 ] && [ "$c3" -gt 0 ] || fail "not every node got connections ($c1, $c2, $c3)"
[ "$c3" -gt "$c1" ] && [ "$c3" -gt "$c2" ] || fail "node3 (weight 2) did not get the most connections ($c1, $c2, $c3)"
grep -q "(STARTTLS)" "$state/dns-test-1.txt" && fail "a STARTTLS record was used while Direct TLS ones were up"
echo "connections: node1 $c1, node2 $c2, node3 $c3 (weights 1, 1, 2)"

echo "== 2. the seed through SRV, its clients spread over the nodes"
run_spec "$state/dns-test-2.txt" "$seed_script" || fail "the seed failed through SRV"
used=$(grep -cE "^  node[0-9]\.localhost:[0-9]+ \(Direct TLS\).*: 1 connection" "$state/dns-test-2.txt")
[ "$used" = 2 ] || fail "the seed's two clients did not connect to two different nodes"

echo "== 3. node2 stopped: the seed and spec/ through SRV again"
pid=$(cat "$cluster_dir/node2.pid")
kill -TERM "$pid"
for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && fail "node2 did not stop"
run_spec "$state/dns-test-3.txt" --srv-seed 3 "$seed_script" "${scripts[@]}" || fail "scripts failed with node2 down"
[ "$(count "$state/dns-test-3.txt" 2 connections)" = 0 ] || fail "a client connected to the stopped node2"
[ "$(count "$state/dns-test-3.txt" 2 refused)" -gt 0 ] || fail "no client tried node2's record first (the weighted order never chose it)"
echo "dns-test: passed"
