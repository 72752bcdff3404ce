#!/usr/bin/env bash
# `make spec`: runs scansion scripts with conclave-spec against a freshly started
# local node (its own database, plaintext allowed on loopback).
#   deploy/local/spec.sh [SCRIPT-OR-DIR ...]     default: spec/ and ../shared/seed/
# Extra conclave-spec options go in $SPEC_OPTS (e.g. SPEC_OPTS=--verbose).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
db="$root/deploy/local/db.sh"
bin="${CONCLAVE_BIN:-$root/.build/debug/conclave}"
spec="${CONCLAVE_SPEC_BIN:-$root/.build/debug/conclave-spec}"
port="${CONCLAVE_SPEC_PORT:-15222}"
state="$root/.conclave"

seed="$root/../shared/seed"
[ -d "$seed" ] || seed="$root/spec/seed"   # the copy, when ../shared is not next to the repository
if [ $# -gt 0 ]; then scripts=("$@"); else scripts=(spec "$seed"); fi

started=0
if ! "$db" status >/dev/null 2>&1; then
    "$db" start >/dev/null || exit 1
    started=1
fi
node=""
cleanup() {
    if [ -n "$node" ]; then kill -TERM "$node" 2>/dev/null; wait "$node" 2>/dev/null; fi
    [ "$started" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT

url=$("$db" recreate conclave_spec)
"$bin" user add-from-scripts --database-url "$url" --log-level warning "${scripts[@]}" || exit 1

"$root/deploy/local/cert.sh" localhost >/dev/null || exit 1
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
"$spec" --node "127.0.0.1:$port" --junit "$state/spec-junit.xml" ${SPEC_OPTS:-} "${scripts[@]}"
