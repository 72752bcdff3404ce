#!/usr/bin/env bash
# The embedded PostgreSQL of a working copy: data, socket and log under .conclave/pg.
#   db.sh start   create on first use, start, create the database, write .conclave/database-url
#   db.sh stop    stop it
#   db.sh status  say whether it runs
#   db.sh url     print the database URL
#   db.sh psql    open psql on it
# PostgreSQL refuses to run as root: as root the server runs as the 'postgres' user.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
state="$root/.conclave"
dir="$state/pg"
data="$dir/data"
sock="$dir/run"
log="$dir/postgres.log"
port="${CONCLAVE_PG_PORT:-55432}"
database="${CONCLAVE_PG_DATABASE:-conclave}"
url="postgres://conclave@127.0.0.1:$port/$database"

find_bindir() {
    local candidate
    if command -v pg_config >/dev/null 2>&1; then
        candidate=$(pg_config --bindir)
        [ -x "$candidate/initdb" ] && { echo "$candidate"; return; }
    fi
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r) /usr/local/pgsql/bin /usr/bin; do
        [ -x "$candidate/initdb" ] && { echo "$candidate"; return; }
    done
    echo "PostgreSQL server binaries (initdb, pg_ctl) not found." >&2
    echo "Install them from your distribution, e.g. 'apt-get install postgresql' on Debian." >&2
    exit 1
}

bindir=$(find_bindir)

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

prepare() {
    mkdir -p "$sock"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || { echo "running as root needs a 'postgres' user" >&2; exit 1; }
        chown -R postgres "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
            echo "the postgres user cannot reach $dir: move the repository somewhere it can read" >&2
            exit 1
        fi
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        echo "creating the embedded PostgreSQL in $data"
        as_owner "$bindir/initdb" -D "$data" -U conclave -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
}

running() {
    as_owner "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1
}

start() {
    prepare
    if ! running; then
        as_owner "$bindir/pg_ctl" -D "$data" -l "$log" -w -t 60 \
            -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c max_connections=200 -c log_lock_waits=on" start >/dev/null \
            || { tail -20 "$log" >&2; exit 1; }
    fi
    if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U conclave -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
        "$bindir/createdb" -h 127.0.0.1 -p "$port" -U conclave "$database"
    fi
    echo "$url" >"$state/database-url"
    echo "PostgreSQL running: $url"
}

stop() {
    if [ -f "$data/PG_VERSION" ] && running; then
        as_owner "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null
        echo "PostgreSQL stopped"
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) if [ -f "$data/PG_VERSION" ] && running; then echo "running: $url"; else echo "stopped"; exit 3; fi ;;
url) echo "$url" ;;
psql) shift; exec "$bindir/psql" -h 127.0.0.1 -p "$port" -U conclave "$database" "$@" ;;
recreate)
    # Drop and create a database on the running server (used by the tests).
    name="${2:?database name}"
    "$bindir/psql" -h 127.0.0.1 -p "$port" -U conclave -d postgres -q -c "DROP DATABASE IF EXISTS $name WITH (FORCE)"
    "$bindir/createdb" -h 127.0.0.1 -p "$port" -U conclave "$name"
    echo "postgres://conclave@127.0.0.1:$port/$name"
    ;;
ensure)
    # Create a database on the running server unless it exists; keep what it holds.
    name="${2:?database name}"
    if ! "$bindir/psql" -h 127.0.0.1 -p "$port" -U conclave -d postgres -tAq -c "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        "$bindir/createdb" -h 127.0.0.1 -p "$port" -U conclave "$name"
    fi
    echo "postgres://conclave@127.0.0.1:$port/$name"
    ;;
*) echo "usage: $0 start|stop|status|url|psql|recreate NAME|ensure NAME" >&2; exit 2 ;;
esac
