#!/usr/bin/env python3
"""The bench-compare tables from conclave-bench's JSON files, and putting them into a doc.

    table.py --table DIR DURATION RUNS   print the Markdown tables of DIR: medians over the
                                         runs of <system>-<size>-<run>.json (fanout --search),
                                         kick-<run>.json and join-<run>.json
    table.py --summary FILE              one line about one result file
    table.py --record-rooms FILE         add "roomsTaken" (a count on standard input) to FILE
    table.py --scale DIR N CPU WORKLOADS the bench-scale table: scale-1-<w>.json against
                                         scale-N-<w>.json, with E(N)
    table.py --into DOC TABLE.md         replace the part of DOC between the bench-compare
                                         markers with TABLE.md (append it when absent)
"""
import datetime
import json
import os
import platform
import statistics
import sys

BEGIN = "<!-- bench-compare:begin -->"
END = "<!-- bench-compare:end -->"
NAMES = {"conclave": "Conclave, 1 node", "conclave3": "Conclave, 3 nodes", "prosody": "Prosody 0.12", "ejabberd": "ejabberd 23.01"}
ORDER = ["conclave", "conclave3", "prosody", "ejabberd"]


def read(path):
    with open(path) as handle:
        return json.load(handle)


def searches(directory):
    """{(system, size): [search result, ...]} for the fanout --search files."""
    results = {}
    for name in sorted(os.listdir(directory)):
        parts = name[:-5].split("-") if name.endswith(".json") else []
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        results.setdefault((parts[0], int(parts[1])), []).append(read(os.path.join(directory, name)))
    return results


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    return (min(values), max(values)) if values else (None, None)


def get(result, *path):
    for key in path:
        if result is None:
            return None
        result = result.get(key) if isinstance(result, dict) else None
    return result


def first_phase(search):
    return search.get("best") or (search.get("tried") or [None])[0]


def num(value, digits=2, unit=""):
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def table(directory, duration, runs):
    results = searches(directory)
    machine = "?"
    for values in results.values():
        for search in values:
            phase = first_phase(search)
            if phase:
                machine = phase["machine"]
    lines = [
        f"Run by `make bench-compare` on {datetime.date.today().isoformat()}: {machine}, {platform.system()} {platform.release()}; "
        f"each cell is the median of {runs} run(s) (the range of the highest rate in brackets); every phase {duration} s "
        "measured after 1 s of warm-up; the load generator on the same cores.",
        "",
        "Throughput and time to deliver:",
        "",
        "| system | room | highest sustained deliveries/s | p99 there (ms) | at half load: p50 / p99 / p99.9 (ms) | server CPU per delivery at half load |",
        "|---|---|---|---|---|---|",
    ]
    keys = sorted(results, key=lambda key: (key[1], ORDER.index(key[0]) if key[0] in ORDER else 99))
    best = {}
    for system, size in keys:
        values = results[(system, size)]
        rates = [(get(s, "best", "deliveriesPerSecond") or 0) for s in values]
        best[(system, size)] = median(rates)
        low, high = spread(rates)
        lines.append(
            f"| {NAMES.get(system, system)} | {size} | {num(median(rates), 0)} ({num(low, 0)}–{num(high, 0)}) | "
            f"{num(median([get(s, 'best', 'latencyMilliseconds', 'p99') for s in values]))} | "
            f"{num(median([get(s, 'half', 'latencyMilliseconds', 'p50') for s in values]))} / "
            f"{num(median([get(s, 'half', 'latencyMilliseconds', 'p99') for s in values]))} / "
            f"{num(median([get(s, 'half', 'latencyMilliseconds', 'p99.9') for s in values]))} | "
            f"{num(median([get(s, 'half', 'serverCPUMicrosecondsPerDelivery') for s in values]), 1, ' µs')} |"
        )
    lines += [
        "",
        "Joining and memory (memory: resident set of the server's processes, read from /proc before the logins, "
        "after them and after the joins; per idle session and per room membership):",
        "",
        "| system | room | join a room of this size: p50 / p99 (ms) | joins/s while filling it | RSS per idle session | RSS per room membership |",
        "|---|---|---|---|---|---|",
    ]
    for system, size in keys:
        values = results[(system, size)]
        phases = [first_phase(s) for s in values]
        lines.append(
            f"| {NAMES.get(system, system)} | {size} | "
            f"{num(median([get(p, 'rejoinMilliseconds', 'p50') for p in phases]))} / "
            f"{num(median([get(p, 'rejoinMilliseconds', 'p99') for p in phases]))} | "
            f"{num(median([get(p, 'joinsPerSecond') for p in phases]), 0)} | "
            f"{num(median([get(p, 'serverRSSKiBPerSession') for p in phases]), 1, ' KiB')} | "
            f"{num(median([get(p, 'serverRSSKiBPerMembership') for p in phases]), 1, ' KiB')} |"
        )
    ratios = []
    for size in sorted({size for _, size in best}):
        mine = best.get(("conclave", size))
        for other in ("prosody", "ejabberd"):
            theirs = best.get((other, size))
            if mine and theirs:
                ratios.append(f"rooms of {size}: {mine / theirs:.2f}× {NAMES[other]}")
    if ratios:
        lines += ["", "Highest sustained deliveries/s of a Conclave node relative to the others: " + "; ".join(ratios) + "."]

    kicks = [read(os.path.join(directory, n)) for n in sorted(os.listdir(directory)) if n.startswith("kick-") and n.endswith(".json")]
    joins = [read(os.path.join(directory, n)) for n in sorted(os.listdir(directory)) if n.startswith("join-") and n.endswith(".json")]
    if kicks or joins:
        lines += ["", "The cluster (3 nodes; medians over the runs):", ""]
    if kicks:
        lines.append(
            f"- Kick across nodes: from an outcast affiliation committed in PostgreSQL to the occupant's kick (status 301) "
            f"on another node than the room's owner: p50 {num(median([get(k, 'latencyMilliseconds', 'p50') for k in kicks]))} ms, "
            f"p90 {num(median([get(k, 'latencyMilliseconds', 'p90') for k in kicks]))} ms, "
            f"max {num(median([get(k, 'latencyMilliseconds', 'max') for k in kicks]))} ms "
            f"({median([k.get('measured') for k in kicks]):.0f} kicks per run)."
        )
    if joins:
        lines.append(
            "- A node joining: node3 started while 2 nodes carry 100 rooms of 10 at 2,000 deliveries/s: "
            f"ready after {num(median([get(j, 'during', 'tookMilliseconds') for j in joins]), 0)} ms, "
            f"took over {num(median([j.get('roomsTaken') for j in joins]), 0)} of 100 rooms; over the 16 s window around it "
            f"{num(median([j.get('lost') for j in joins]), 0)} copies lost, time to deliver p99 "
            f"{num(median([get(j, 'latencyMilliseconds', 'p99') for j in joins]))} ms, p99.9 "
            f"{num(median([get(j, 'latencyMilliseconds', 'p99.9') for j in joins]))} ms, max "
            f"{num(median([get(j, 'latencyMilliseconds', 'max') for j in joins]))} ms."
        )
    return "\n".join(lines) + "\n"


def summary(path):
    if not os.path.exists(path):
        return f"  (no result: {path})"
    result = read(path)
    if "tried" in result:
        best, half = result.get("best"), result.get("half")
        if not best:
            phase = first_phase(result)
            return f"  nothing sustained (first phase: {num(get(phase, 'deliveriesPerSecond'), 0)}/s, lost {get(phase, 'lost')})"
        return (
            f"  highest sustained {num(best['deliveriesPerSecond'], 0)} deliveries/s (p99 {num(get(best, 'latencyMilliseconds', 'p99'))} ms); "
            f"half load p99 {num(get(half, 'latencyMilliseconds', 'p99'))} ms, "
            f"CPU {num(get(half, 'serverCPUMicrosecondsPerDelivery'), 1)} µs/delivery; "
            f"RSS {num(best.get('serverRSSKiBPerSession'), 1)} KiB/session"
        )
    if "during" in result:
        return (
            f"  node join: ready after {num(get(result, 'during', 'tookMilliseconds'), 0)} ms, rooms taken {result.get('roomsTaken')}, "
            f"lost {result.get('lost')}, p99 {num(get(result, 'latencyMilliseconds', 'p99'))} ms, max {num(get(result, 'latencyMilliseconds', 'max'))} ms"
        )
    return "  " + json.dumps(result)[:200]


def scale(directory, nodes, cpu, workloads):
    """The bench-scale table: capacity and CPU per delivery, 1 node against N, and E(N)."""
    nodes = int(nodes)
    names = {"10": "30 rooms of 10", "100": "6 rooms of 100", "1000": "1 room of 1,000"}
    lines = [
        f"Every node held to {cpu} CPU (cgroup quota, period {os.environ.get('BENCH_SCALE_PERIOD', '10000')} µs); clients round robin over the nodes; "
        f"capacity: highest rate sustained with nothing lost and p99 < 100 ms.",
        "",
        f"| Workload | Capacity, 1 node | Capacity, {nodes} nodes | E({nodes}) | CPU/delivery at capacity, 1 / {nodes} nodes "
        f"| CPU/delivery at half load, 1 / {nodes} nodes | {nodes} nodes / 1 node at half load |",
        "|---|---|---|---|---|---|---|",
    ]
    for workload in workloads.split():
        def load(count):
            path = os.path.join(directory, f"scale-{count}-{workload}.json")
            return read(path) if os.path.exists(path) else {}
        one, many = load(1), load(nodes)
        cap1 = get(one.get("best"), "deliveriesPerSecond")
        capn = get(many.get("best"), "deliveriesPerSecond")
        efficiency = capn / (nodes * cap1) if cap1 and capn else None
        cpu1 = get(one.get("best"), "serverCPUMicrosecondsPerDelivery")
        cpun = get(many.get("best"), "serverCPUMicrosecondsPerDelivery")
        half1 = get(one.get("half"), "serverCPUMicrosecondsPerDelivery")
        halfn = get(many.get("half"), "serverCPUMicrosecondsPerDelivery")
        ratio = halfn / half1 if half1 and halfn else None
        lines.append(
            f"| {names.get(workload, workload)} | {num(cap1, 0)}/s | {num(capn, 0)}/s | {num(efficiency, 2)} "
            f"| {num(cpu1, 1)} / {num(cpun, 1)} µs | {num(half1, 1)} / {num(halfn, 1)} µs | {num(ratio, 2)}× |"
        )
    return "\n".join(lines) + "\n"


def record_rooms(path):
    if not os.path.exists(path):
        return
    result = read(path)
    text = sys.stdin.read().strip()
    result["roomsTaken"] = int(text) if text.isdigit() else None
    with open(path, "w") as handle:
        json.dump(result, handle, indent=2, sort_keys=True)


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
    arguments = sys.argv[1:]
    if len(arguments) == 4 and arguments[0] == "--table":
        sys.stdout.write(table(arguments[1], arguments[2], arguments[3]))
    elif len(arguments) == 2 and arguments[0] == "--summary":
        print(summary(arguments[1]))
    elif len(arguments) == 5 and arguments[0] == "--scale":
        sys.stdout.write(scale(*arguments[1:]))
    elif len(arguments) == 2 and arguments[0] == "--record-rooms":
        record_rooms(arguments[1])
    elif len(arguments) == 3 and arguments[0] == "--into":
        into(arguments[1], arguments[2])
    else:
        sys.exit(__doc__)
