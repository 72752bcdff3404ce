#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target (built by `make fuzz-build`) for FUZZ_SECONDS,
# one after the other (each holds a core). The committed corpus Tests/Fuzz/corpus/<target>/
# seeds it; what libFuzzer finds new goes to .conclave/fuzz/corpus/<target>/ (not the
# committed corpus), crashes to .conclave/fuzz/artifacts/<target>/, logs to
# .conclave/fuzz/<target>.log. Exits non-zero when a target crashed, and names the
# reproducer: replay it with `.build-fuzz/release/<Executable> <file>`.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-stream-parser round-trip room}
bin=.build-fuzz/release
state=.conclave/fuzz
mkdir -p "$state"
# Swift's crash backtracer would wait for a debugger; libFuzzer reports the crash itself.
export SWIFT_BACKTRACE=enable=no

executable() {
    case "$1" in
        stream-parser) echo FuzzStreamParser ;;
        round-trip) echo FuzzRoundTrip ;;
        room) echo FuzzRoom ;;
        *) echo "unknown fuzz target $1" >&2; exit 2 ;;
    esac
}

status=0
summary="$state/summary.txt"
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) FUZZ_SECONDS=$seconds" > "$summary"
for target in $targets; do
    exe="$bin/$(executable "$target")"
    [ -x "$exe" ] || { echo "$exe is missing: run make fuzz-build" >&2; exit 2; }
    mkdir -p "$state/corpus/$target" "$state/artifacts/$target"
    options=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$state/artifacts/$target/")
    case "$target" in
        stream-parser) options+=(-dict=Fuzz/xml.dict -max_len=12000) ;;
        round-trip) options+=(-dict=Fuzz/xml.dict) ;;
    esac
    echo "fuzzing $target for ${seconds}s (log: $state/$target.log)"
    "$exe" "${options[@]}" "$state/corpus/$target" "Tests/Fuzz/corpus/$target" > "$state/$target.log" 2>&1
    code=$?
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$state/$target.log" | tail -1 | awk '{print $2}')
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$state/$target.log" | tail -1 | tr -d '#')
    time=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$state/$target.log" | tail -1 | awk '{print $5}')
    coverage=$(grep -o 'cov: [0-9]* ft: [0-9]*' "$state/$target.log" | tail -1)
    if [ "$code" = 0 ]; then
        line="$target: ${runs:-?} executions in ${time:-$seconds} s, $coverage, no crash"
    else
        status=1
        reproducer=$(grep -o 'Test unit written to [^ ]*' "$state/$target.log" | tail -1 | awk '{print $5}')
        finding=$(grep -m1 -E 'fuzz finding|Fatal error|ERROR: AddressSanitizer|ERROR: libFuzzer' "$state/$target.log")
        line="$target: CRASHED after ${runs:-?} executions: $finding; reproducer: ${reproducer:-see the log}"
    fi
    echo "$line" | tee -a "$summary"
done
exit "$status"
