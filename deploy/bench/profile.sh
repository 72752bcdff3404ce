#!/usr/bin/env bash
# Where a Conclave node spends its instructions per delivered copy: one release node under
# valgrind's callgrind (instruction counts, repeatable whatever else the machine does),
# a room of ROOM_SIZE (default 100) receiving RATE messages/s (default 5) for DURATION s
# (default 10) from conclave-bench; only the traffic window is collected. Prints the
# instructions per delivered copy and the functions that cost most (inclusive), and
# leaves the profile in .conclave/profile/callgrind.out for callgrind_annotate or
# kcachegrind. Needs valgrind (apt-get install valgrind) and `swift build -c release`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
release="$root/.build/release"
out="$root/.conclave/profile"
size="${ROOM_SIZE:-100}"
rate="${RATE:-5}"
duration="${DURATION:-10}"
db="$root/deploy/local/db.sh"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
[ -x "$release/conclave" ] && [ -x "$release/conclave-bench" ] || { echo "build first: swift build -c release" >&2; exit 1; }
mkdir -p "$out"
rm -f "$out"/callgrind.out*
started_db=0
if ! "$db" status >/dev/null 2>&1; then "$db" start >/dev/null; started_db=1; fi
url=$("$db" recreate conclave_profile)
"$release/conclave" migrate --database-url "$url" --log-level error >/dev/null
"$release/conclave-bench" accounts --count "$size" | "$release/conclave" user add-from-file - --database-url "$url" --log-level error >/dev/null
"$root/deploy/local/certs.sh" 1 >/dev/null
tls="${CONCLAVE_TLS_DIR:-$root/.conclave/tls}"
valgrind --tool=callgrind --collect-atstart=no --callgrind-out-file="$out/callgrind.out" \
    "$release/conclave" serve --database-url "$url" --node-name profile --host 127.0.0.1 --port 18222 \
    --link-host 127.0.0.1 --link-port 18224 --tls-certificate "$tls/node1.crt" --tls-key "$tls/node1.key" \
    --log-level warning >"$out/node.log" 2>&1 &
node=$!
cleanup() {
    kill "$node" 2>/dev/null || true
    wait "$node" 2>/dev/null || true
    [ "$started_db" = 1 ] && "$db" stop >/dev/null
    return 0
}
trap cleanup EXIT
for _ in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/18222) 2>/dev/null && break; sleep 0.1; done
# Collected during the measured window only (after 1 s of warm-up).
"$release/conclave-bench" fanout --server 127.0.0.1:18222 --rooms 1 --room-size "$size" --rate "$rate" \
    --duration "$duration" --warmup 1 --drain 5 --join-probes 0 --quiet --label profile \
    --during "callgrind_control -i on $node >/dev/null; sleep $duration; callgrind_control -i off $node >/dev/null" \
    --json "$out/fanout.json" || true
callgrind_control -d "$node" >/dev/null
sleep 1
profile=$(ls -t "$out"/callgrind.out* | head -1)
python3 - "$out/fanout.json" "$profile" <<'PY'
import json, re, subprocess, sys
result = json.load(open(sys.argv[1]))
copies = result["deliveries"]
text = subprocess.run(["callgrind_annotate", "--inclusive=yes", sys.argv[2]], capture_output=True, text=True).stdout
total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
print(f"{copies} copies delivered in the collected window (lost {result['lost']}, p99 "
      f"{result['latencyMilliseconds'].get('p99', 0):.1f} ms under valgrind): {total / copies:,.0f} instructions per delivered copy")
print(text[text.index("PROGRAM TOTALS"):][:6000])
PY
