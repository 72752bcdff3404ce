#!/usr/bin/env python3
"""The bench-compare table from conclave-bench's JSON files, and putting it into a doc.

    table.py DIR DURATION            print the Markdown table of DIR/<system>-<size>.json
    table.py --into DOC TABLE.md     replace the part of DOC between the bench-compare
                                     markers with TABLE.md (append it when absent)
"""
import datetime
import json
import os
import platform
import sys

BEGIN = "<!-- bench-compare:begin -->"
END = "<!-- bench-compare:end -->"
NAMES = {"conclave": "Conclave, 1 node", "conclave3": "Conclave, 3 nodes", "prosody": "Prosody", "ejabberd": "ejabberd"}


def load(directory):
    results = {}
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        system, size = name[:-5].rsplit("-", 1)
        with open(os.path.join(directory, name)) as handle:
            results[(system, int(size))] = json.load(handle)
    return results


def ms(result, key):
    value = (result or {}).get("latencyMilliseconds", {}).get(key)
    return "-" if value is None else f"{value:.2f}"


def table(directory, duration):
    results = load(directory)
    machine = next((r["best"] or r["tried"][0])["machine"] for r in results.values() if r.get("best") or r.get("tried")) if results else "?"
    lines = [
        f"Run by `make bench-compare` on {datetime.date.today().isoformat()}: {machine}, {platform.system()} {platform.release()}; "
        f"every phase {duration} s measured after 1 s of warm-up; one search per cell (not yet the median of 3); "
        "the load generator on the same cores.",
        "",
        "| system | room | highest sustained deliveries/s | p99 there | at half load: p50 / p99 / p99.9 (ms) | CPU per delivery at half load | join p50 | RSS per session |",
        "|---|---|---|---|---|---|---|---|",
    ]
    best_by = {}
    for (system, size), result in sorted(results.items(), key=lambda item: (item[0][1], item[0][0])):
        best, half = result.get("best"), result.get("half")
        rate = best["deliveriesPerSecond"] if best else 0
        best_by[(system, size)] = rate
        cpu = half.get("serverCPUMicrosecondsPerDelivery") if half else None
        join = (best or (result.get("tried") or [{}])[0]).get("joinMilliseconds", {}).get("p50")
        rss = (best or {}).get("serverRSSKiBPerSession")
        lines.append(
            f"| {NAMES.get(system, system)} | {size} | {rate:,.0f} | {ms(best, 'p99')} | "
            f"{ms(half, 'p50')} / {ms(half, 'p99')} / {ms(half, 'p99.9')} | "
            f"{'-' if cpu is None else f'{cpu:.1f} µs'} | {'-' if join is None else f'{join:.1f} ms'} | "
            f"{'-' if rss is None else f'{rss:.1f} KiB'} |"
        )
    ratios = []
    for size in sorted({size for _, size in best_by}):
        mine = best_by.get(("conclave", size))
        for other in ("prosody", "ejabberd"):
            theirs = best_by.get((other, size))
            if mine and theirs:
                ratios.append(f"rooms of {size}: Conclave (1 node) sustains {mine / theirs:.2f}× {NAMES[other]}'s deliveries/s")
    if ratios:
        lines += ["", "Ratios: " + "; ".join(ratios) + "."]
    return "\n".join(lines) + "\n"


def into(doc, table_file):
    with open(table_file) as handle:
        block = BEGIN + "\n" + handle.read() + END
    text = open(doc).read() if os.path.exists(doc) else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n## make bench-compare\n\n" + block + "\n"
    with open(doc, "w") as handle:
        handle.write(text)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--into":
        into(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3:
        sys.stdout.write(table(sys.argv[1], sys.argv[2]))
    else:
        sys.exit(__doc__)
