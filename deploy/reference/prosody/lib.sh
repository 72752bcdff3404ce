# Shared by spec.sh and diff.sh (sourced): Prosody 0.12 from Debian as the reference
# server, on 127.0.0.1:$1 with prosody.cfg.lua.in, its state under $2 (wiped first),
# the accounts of the file $3 ("jid<TAB>password" lines) registered. Installs nothing.
# Sets prosody_pid; prosody_stop stops it (call it from an EXIT trap).

as_prosody() { if [ "$(id -u)" = 0 ]; then runuser -u prosody -- "$@"; else "$@"; fi; }

prosody_start() {
    local port=$1 dir=$2 accounts=$3 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
    if ! command -v prosody >/dev/null; then
        echo "Prosody is not installed: 'apt-get install prosody' (Debian 12 ships 0.12), then run again." >&2
        return 2
    fi
    prosody_dir=$dir
    # A Prosody left over from an interrupted run would hold the port.
    if [ -f "$dir/prosody.pid" ]; then kill "$(cat "$dir/prosody.pid")" 2>/dev/null; sleep 0.5; fi
    rm -rf "$dir"
    mkdir -p "$dir/data"
    "$root/deploy/local/cert.sh" localhost >/dev/null || return 1
    cp "$root/.conclave/tls/localhost.crt" "$root/.conclave/tls/localhost.key" "$dir/"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@CERT@|$dir/localhost.crt|g" -e "s|@KEY@|$dir/localhost.key|g" \
        "$root/deploy/reference/prosody/prosody.cfg.lua.in" >"$dir/prosody.cfg.lua"
    [ "$(id -u)" = 0 ] && chown -R prosody "$dir"
    local jid password
    while IFS=$'\t' read -r jid password; do
        [ -n "$jid" ] || continue
        as_prosody prosodyctl --config "$dir/prosody.cfg.lua" register "${jid%@*}" "${jid#*@}" "$password" >/dev/null
    done <"$accounts"
    if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
        echo "something already listens on 127.0.0.1:$port (CONCLAVE_PROSODY_PORT chooses another port)" >&2
        return 1
    fi
    as_prosody prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
    prosody_pid=$!
    local _
    for _ in $(seq 1 100); do
        (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
        kill -0 $prosody_pid 2>/dev/null || { echo "Prosody did not start:" >&2; cat "$dir/stdout.log" "$dir/prosody.log" >&2; return 1; }
        sleep 0.1
    done
    echo "$(prosodyctl about 2>/dev/null | head -1) listening on 127.0.0.1:$port"
}

# $prosody_pid is runuser; Prosody itself (lua) writes its pid file: stop that one.
prosody_stop() {
    [ -n "${prosody_dir:-}" ] && [ -f "$prosody_dir/prosody.pid" ] && kill "$(cat "$prosody_dir/prosody.pid")" 2>/dev/null
    if [ -n "${prosody_pid:-}" ]; then
        kill "$prosody_pid" 2>/dev/null
        wait "$prosody_pid" 2>/dev/null
    fi
    return 0
}
