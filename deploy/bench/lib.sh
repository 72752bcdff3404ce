# Shared by deploy/bench/compare.sh, scale.sh and logins.sh (sourced, not run, with
# `root` set): the paths, the accounts, the release build's check, starting PostgreSQL
# and the Conclave nodes.
db="$root/deploy/local/db.sh"
cluster="$root/deploy/local/cluster.sh"
release="$root/.build/release"
bench="$release/conclave-bench"
out="$root/.conclave/bench"
accounts=1000
cluster_dir=.conclave/bench-cluster
mkdir -p "$out"
[ -x "$bench" ] && [ -x "$release/conclave" ] || { echo "build first: swift build -c release" >&2; exit 1; }

# Starts the embedded PostgreSQL unless it runs; started_db=1 when this started it (the
# caller's cleanup stops it again).
started_db=0
db_start() {
    if ! "$db" status >/dev/null 2>&1; then "$db" start >/dev/null || exit 1; started_db=1; fi
}

cluster_() { CONCLAVE_CLUSTER_DIR=$cluster_dir "$cluster" "$@"; }

# A fresh Conclave database with the accounts; prints its URL.
conclave_database() {
    local url
    url=$("$db" recreate conclave_bench 2>/dev/null) || return 1
    "$release/conclave" migrate --database-url "$url" --log-level warning >/dev/null || return 1
    "$bench" accounts --count "$accounts" | "$release/conclave" user add-from-file - --database-url "$url" --log-level warning >/dev/null || return 1
    echo "$url"
}

# Starts NODES Conclave nodes on ports 17222, 17232, ... ($server_bin if set, else the
# release build); sets servers, pids and url.
conclave_up() {
    local nodes=$1 i
    cluster_ down >/dev/null 2>&1
    url=$(conclave_database) || return 1
    CONCLAVE_BIN="${server_bin:-$release/conclave}" CONCLAVE_CLUSTER_DIR=$cluster_dir CONCLAVE_CLUSTER_BASE_PORT=17222 \
        CONCLAVE_CLUSTER_DATABASE_URL="$url" "$cluster" up "$nodes" >/dev/null || return 1
    servers="" pids=""
    for ((i = 0; i < nodes; i++)); do
        servers="$servers 127.0.0.1:$((17222 + 10 * i))"
        pids="$pids $(cat "$root/$cluster_dir/node$((i + 1)).pid")"
    done
}
