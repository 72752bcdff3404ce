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

. "$root/deploy/reference/prosody/lib.sh"
scripts=("$seed"/*.scs)
for file in spec/*.scs; do [ -e "$file" ] && scripts+=("$file"); done
accounts="$root/.conclave/prosody-accounts.txt"
mkdir -p "$root/.conclave"
"$spec" --print-accounts "${scripts[@]}" spec/mutations >"$accounts" || exit 1
trap prosody_stop EXIT
prosody_start "$port" "$dir" "$accounts" || exit 1

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
