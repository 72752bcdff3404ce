#!/usr/bin/env bash
# A local cluster: N nodes of `conclave serve` in the background, one shared database
# and one shared cluster secret.
#   cluster.sh up [N]   start N nodes (default 3) and wait until each one logged "node ready"
#   cluster.sh add      start one more node (node N+1) in the running cluster
#   cluster.sh down     drain and stop every node (SIGTERM), and PostgreSQL if `up` started it
#   cluster.sh status   which nodes run, with their ports
# Node i is node$i: STARTTLS on 127.0.0.1:BASE+10*(i-1), Direct TLS on the next port,
# its node-to-node link on the one after that (5222/5223/5224, 5232/5233/5234, ...), and
# /healthz, /readyz, /metrics over HTTP on the next (5225, 5235, ...).
# Logs and pid files: $CONCLAVE_CLUSTER_DIR/node$i.log and node$i.pid.
# Environment:
#   CONCLAVE_BIN                   the conclave binary (default .build/debug/conclave)
#   CONCLAVE_CLUSTER_BASE_PORT     node1's STARTTLS port (default 5222)
#   CONCLAVE_CLUSTER_DATABASE_URL  use this database (then the embedded PostgreSQL is
#                                  neither started nor stopped); default: the embedded
#                                  one, the database `make run` uses
#   CONCLAVE_CLUSTER_DIR           logs, pid files and state (default .conclave/cluster)
#   CONCLAVE_LOG_LEVEL             the nodes' log level (default info)
#   CONCLAVE_TLS_DIR               the CA and node certificates (default .conclave/tls;
#                                  created by deploy/local/certs.sh, i.e. `make certs`)
# Other CONCLAVE_* variables (docs/configuration.md) reach every node as usual.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
db="$root/deploy/local/db.sh"
bin="${CONCLAVE_BIN:-$root/.build/debug/conclave}"
base="${CONCLAVE_CLUSTER_BASE_PORT:-5222}"
level="${CONCLAVE_LOG_LEVEL:-info}"
secret="$root/.conclave/cluster-secret"
tls="${CONCLAVE_TLS_DIR:-$root/.conclave/tls}"
dir="${CONCLAVE_CLUSTER_DIR:-.conclave/cluster}"
case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
# State kept between `up` and `down`/`status`:
nodes_file="$dir/nodes"           # one "name starttls direct-tls link" line per node
db_marker="$dir/started-postgres" # present when `up` started the embedded PostgreSQL
url_file="$dir/database-url"      # the database the nodes use

case "$base" in '' | *[!0-9]*) echo "CONCLAVE_CLUSTER_BASE_PORT must be a port number, not '$base'" >&2; exit 2 ;; esac

# How to run `down` for this cluster, for messages: plain `make cluster-down` unless
# the directory was overridden.
if [ -n "${CONCLAVE_CLUSTER_DIR:-}" ]; then
    down_command="CONCLAVE_CLUSTER_DIR=$CONCLAVE_CLUSTER_DIR deploy/local/cluster.sh down"
else
    down_command="make cluster-down"
fi

# The path as it is shown to the user: relative to the repository when inside it.
show() { echo "${1#"$root"/}"; }

# Whether pid $1 is a running node named $2. A zombie (exited, not reaped yet) counts
# as gone, and so does a process whose command line is not a conclave node of that
# name: pids get reused, and `down` must not signal some other process.
alive() {
    local pid=$1 name=$2 state
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    if [ -r "/proc/$pid/stat" ]; then
        state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
        [ "$state" != Z ] || return 1
    fi
    if [ -r "/proc/$pid/cmdline" ]; then
        tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qx -- "$name" || return 1
    fi
    return 0
}

pid_of() { cat "$dir/$1.pid" 2>/dev/null; }

# The names of the nodes with a pid file, node1 before node2 before node10.
pid_names() {
    local file
    for file in "$dir"/node*.pid; do
        [ -e "$file" ] && basename "$file" .pid
    done | sort -V
}

# SIGTERM one node and wait for it to drain and exit; SIGKILL after $2 seconds.
stop_node() {
    local name=$1 timeout=$2 pid i
    pid=$(pid_of "$name")
    if alive "$pid" "$name"; then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < timeout * 10; i++)); do
            alive "$pid" "$name" || break
            sleep 0.1
        done
        if alive "$pid" "$name"; then
            echo "$name (pid $pid) did not exit within $timeout s after SIGTERM: killing it" >&2
            kill -KILL "$pid" 2>/dev/null
            for ((i = 0; i < 50; i++)); do alive "$pid" "$name" || break; sleep 0.1; done
        else
            echo "$name stopped"
        fi
    else
        echo "$name was not running"
    fi
    rm -f "$dir/$name.pid"
}

# One node after the other, so that a draining node's rooms move to nodes that still
# run (stopping them all at once would have them drain into each other).
stop_nodes() {
    local timeout=$1 name
    for name in $(pid_names | sort -V -r); do
        stop_node "$name" "$timeout"
    done
}

stop_postgres() {
    if [ -f "$db_marker" ]; then
        "$db" stop
        rm -f "$db_marker"
    fi
}

table() {
    local name starttls direct link pid state
    printf '  %-7s %-18s %-16s %-16s %-16s %-16s %s\n' node state STARTTLS "Direct TLS" link HTTP log
    while read -r name starttls direct link; do
        [ -n "$name" ] || continue
        pid=$(pid_of "$name")
        if alive "$pid" "$name"; then state="running ($pid)"; else state=stopped; fi
        printf '  %-7s %-18s %-16s %-16s %-16s %-16s %s\n' "$name" "$state" "127.0.0.1:$starttls" \
            "127.0.0.1:$direct" "127.0.0.1:$link" "127.0.0.1:$((link + 1))" "$(show "$dir/$name.log")"
    done <"$nodes_file"
}

# Starts node$1 against database $2 in the background ($3: setsid or empty) and records
# it in the nodes file.
start_node() {
    local i=$1 url=$2 detach=$3 name starttls direct link
    name="node$i"
    starttls=$((base + 10 * (i - 1)))
    direct=$((starttls + 1))
    link=$((starttls + 2))
    echo "$name $starttls $direct $link" >>"$nodes_file"
    $detach "$bin" serve --database-url "$url" --node-name "$name" \
        --host 127.0.0.1 --port "$starttls" --direct-tls-port "$direct" \
        --link-host 127.0.0.1 --link-port "$link" --http-port "$((link + 1))" --cluster-secret-file "$secret" \
        --tls-certificate "$tls/$name.crt" --tls-key "$tls/$name.key" --cluster-tls-ca "$tls/ca.crt" \
        --allow-plaintext-on-loopback --log-level "$level" </dev/null >"$dir/$name.log" 2>&1 &
    echo $! >"$dir/$name.pid"
}

# Waits (up to 20 s) until each of the nodes numbered in the arguments logged "node
# ready"; fails, with its log, when one exits first or is not ready in time.
wait_ready() {
    local pending="$*" still n name i
    for ((i = 0; i < 200; i++)); do
        still=""
        for n in $pending; do
            name="node$n"
            if grep -q "node ready" "$dir/$name.log" 2>/dev/null; then continue; fi
            # Looked at twice: just after it was started, the pid may still be the
            # shell's fork that has not run the node yet (its command line is the shell's).
            if ! alive "$(pid_of "$name")" "$name" && ! { sleep 0.3; alive "$(pid_of "$name")" "$name"; } \
                && ! grep -q "node ready" "$dir/$name.log" 2>/dev/null; then
                echo "$name exited before it was ready; its log ($(show "$dir/$name.log")):" >&2
                cat "$dir/$name.log" >&2
                return 1
            fi
            still="$still $n"
        done
        pending=$still
        [ -z "$pending" ] && return 0
        sleep 0.1
    done
    for n in $pending; do
        echo "node$n was not ready within 20 s; its log ($(show "$dir/node$n.log")):" >&2
        cat "$dir/node$n.log" >&2
    done
    return 1
}

# One more node in a running cluster: node(N+1), with its certificate, against the
# cluster's database; waits until it is ready.
add() {
    local count url detach=""
    [ -s "$nodes_file" ] && [ -s "$url_file" ] || { echo "no cluster in $(show "$dir") to add a node to (make cluster-up first)" >&2; exit 1; }
    count=$(grep -c . "$nodes_file")
    url=$(cat "$url_file")
    "$root/deploy/local/certs.sh" "$((count + 1))" || exit 1
    command -v setsid >/dev/null && detach=setsid
    start_node "$((count + 1))" "$url" "$detach"
    wait_ready "$((count + 1))" || { stop_node "node$((count + 1))" 10; exit 1; }
    echo "node$((count + 1)) running:"
    table
}

up() {
    local count=${1:-3} name pid i url detach=""
    case "$count" in '' | *[!0-9]* | 0) echo "usage: $0 up [N]   (N: how many nodes, at least 1)" >&2; exit 2 ;; esac
    command -v "$bin" >/dev/null || { echo "$bin not found: build first (make build)" >&2; exit 1; }
    mkdir -p "$dir"

    # A node of an earlier `up` still running: refuse rather than start a second set
    # on the same ports. Pid files of nodes that are gone are left-overs: remove them.
    for name in $(pid_names); do
        pid=$(pid_of "$name")
        if alive "$pid" "$name"; then
            echo "$name is still running (pid $pid): run '$down_command' first" >&2
            exit 1
        fi
        rm -f "$dir/$name.pid"
    done

    # The database: the given one, else the embedded PostgreSQL (the database of
    # `make run`), started here if it is not running. The marker tells `down` to stop
    # it again; one left by an earlier `up` that was never brought down stays.
    if [ -n "${CONCLAVE_CLUSTER_DATABASE_URL:-}" ]; then
        url=$CONCLAVE_CLUSTER_DATABASE_URL
    else
        if ! "$db" status >/dev/null 2>&1; then
            "$db" start || exit 1
            touch "$db_marker"
        fi
        url=$("$db" url)
    fi
    echo "$url" >"$url_file"

    # Certificates: a local CA and one per node (make certs); clients verify the
    # nodes against ca.crt, and the nodes link with each other over mutual TLS.
    "$root/deploy/local/certs.sh" "$count" || exit 1

    # The shared secret the nodes authenticate their links with: created once, read
    # by the owner only, and the same for every cluster of this working copy.
    if [ ! -s "$secret" ]; then
        mkdir -p "$(dirname "$secret")"
        (
            umask 077
            openssl rand -hex 32 >"$secret.tmp" 2>/dev/null \
                || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret.tmp"
        ) || { echo "could not create $secret" >&2; rm -f "$secret.tmp"; exit 1; }
        chmod 600 "$secret.tmp" && mv -f "$secret.tmp" "$secret"
        echo "created the cluster secret $(show "$secret")"
    fi

    # From here on a failure (a node that does not start, Ctrl-C) stops what this
    # `up` started, so that nothing is left half running.
    started_ok=0
    trap '[ "$started_ok" = 1 ] || { stop_nodes 10 >/dev/null; stop_postgres >/dev/null; }' EXIT
    trap 'exit 130' INT TERM

    # setsid: the nodes outlive this script and ignore a Ctrl-C in its terminal.
    command -v setsid >/dev/null && detach=setsid
    : >"$nodes_file"
    for ((i = 1; i <= count; i++)); do start_node "$i" "$url" "$detach"; done

    # Wait (up to 20 s) until every node logged "node ready"; a node that exits first
    # fails the whole `up`, with its log.
    wait_ready $(seq 1 "$count") || exit 1
    started_ok=1

    # The CLI finds the embedded database by itself; another one must be named.
    local db_option=""
    [ -n "${CONCLAVE_CLUSTER_DATABASE_URL:-}" ] && db_option=" --database-url $url"
    cat <<MSG

$count node(s) running, database $url:

$(table)

Add a user (from this directory; every node sees it, they share the database):
    $(show "$bin") user add romeo@localhost --password secret$db_option
Connect an XMPP client as romeo@localhost to any node's STARTTLS or Direct TLS port
(certificates signed by the local CA $(show "$tls/ca.crt")); rooms are at conference.localhost.
Watch the cluster:
    $(show "$bin") cluster status$db_option
Stop it:
    $down_command
MSG
}

down() {
    # DNS records served for this cluster (deploy/local/dns.sh) go with it.
    [ -f "$dir/dnsmasq.pid" ] && CONCLAVE_CLUSTER_DIR="$dir" "$root/deploy/local/dns.sh" stop
    if [ -d "$dir" ]; then
        [ -n "$(pid_names)" ] || echo "no node running"
        stop_nodes 30
    else
        echo "no cluster in $(show "$dir")"
    fi
    stop_postgres
    return 0
}

status() {
    if [ ! -s "$nodes_file" ]; then
        echo "no cluster in $(show "$dir") (start one with 'make cluster-up')"
        exit 3
    fi
    local running=0 name rest
    while read -r name rest; do
        alive "$(pid_of "$name")" "$name" && running=$((running + 1))
    done <"$nodes_file"
    echo "$running of $(grep -c . "$nodes_file") node(s) running, database $(cat "$url_file" 2>/dev/null || echo '?'):"
    table
    [ "$running" -gt 0 ] || exit 3
}

case "${1:-}" in
up) shift; up "$@" ;;
add) add ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up [N]|add|down|status" >&2; exit 2 ;;
esac
