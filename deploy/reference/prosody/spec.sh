#!/usr/bin/env bash
# `make spec-prosody`: checks conclave-spec against a server it did not write.
# Installs nothing: needs Debian's prosody package (apt-get install prosody).
# Starts Prosody 0.12 on 127.0.0.1:$PORT with deploy/reference/prosody/prosody.cfg.lua.in,
# registers the scripts' accounts, runs the seed and spec/ (which must pass) and the
# mutated seeds of spec/mutations/ (each of which must fail), then stops Prosody.
set -uo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$root"
port="${CONCLAVE_PROSODY_PORT:-25222}"
dir="$root/.conclave/prosody"
spec="${CONCLAVE_SPEC_BIN:-$root/.build/debug/conclave-spec}"
seed="${CONCLAVE_SEED_DIR:-$root/../shared/seed}"
[ -d "$seed" ] || seed="$root/spec/seed"   # the copy, when ../shared is not next to the repository

if ! command -v prosody >/dev/null; then
    echo "Prosody is not installed: 'apt-get install prosody' (Debian 12 ships 0.12), then run again." >&2
    exit 2
fi

as_prosody() { if [ "$(id -u)" = 0 ]; then runuser -u prosody -- "$@"; else "$@"; fi; }

# A Prosody left over from an interrupted run would hold the port.
if [ -f "$dir/prosody.pid" ]; then kill "$(cat "$dir/prosody.pid")" 2>/dev/null; sleep 0.5; fi
rm -rf "$dir"
mkdir -p "$dir/data"
"$root/deploy/local/cert.sh" localhost >/dev/null
cp "$root/.conclave/tls/localhost.crt" "$root/.conclave/tls/localhost.key" "$dir/"
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@CERT@|$dir/localhost.crt|g" -e "s|@KEY@|$dir/localhost.key|g" \
    "$root/deploy/reference/prosody/prosody.cfg.lua.in" >"$dir/prosody.cfg.lua"
[ "$(id -u)" = 0 ] && chown -R prosody "$dir"

scripts=("$seed"/*.scs)
for file in spec/*.scs; do [ -e "$file" ] && scripts+=("$file"); done
"$spec" --print-accounts "${scripts[@]}" spec/mutations | while IFS=$'\t' read -r jid password; do
    as_prosody prosodyctl --config "$dir/prosody.cfg.lua" register "${jid%@*}" "${jid#*@}" "$password" >/dev/null
done

if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then
    echo "something already listens on 127.0.0.1:$port (CONCLAVE_PROSODY_PORT chooses another port)" >&2
    exit 1
fi
as_prosody prosody --config "$dir/prosody.cfg.lua" >"$dir/stdout.log" 2>&1 &
pid=$!
# $pid is runuser; Prosody itself (lua) writes its pid file: stop that one.
stop_prosody() {
    [ -f "$dir/prosody.pid" ] && kill "$(cat "$dir/prosody.pid")" 2>/dev/null
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null
}
trap stop_prosody EXIT
for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { echo "Prosody did not start:" >&2; cat "$dir/stdout.log" "$dir/prosody.log" >&2; exit 1; }
    sleep 0.1
done
echo "$(prosodyctl about 2>/dev/null | head -1) listening on 127.0.0.1:$port"

status=0
echo "== the seed and spec/ must pass"
# Scripts tagged differs-from-prosody pin where Conclave deliberately differs (README).
"$spec" --node "127.0.0.1:$port" --skip-tags differs-from-prosody "${scripts[@]}" || status=1
echo "== each mutated seed must fail"
for mutation in spec/mutations/*.scs; do
    if output=$("$spec" --node "127.0.0.1:$port" "$mutation"); then
        echo "NOT DETECTED: $mutation passed"
        status=1
    else
        echo "$output" | head -n -1
    fi
done
exit $status
