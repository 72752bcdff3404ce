#!/usr/bin/env python3
"""One line of the overload curve, or the recovery's lines, from conclave-bench fanout --json."""
import argparse
import json

parser = argparse.ArgumentParser()
parser.add_argument("result")
parser.add_argument("--factor")
parser.add_argument("--recovery", action="store_true")
parser.add_argument("--leases", default="0")
args = parser.parse_args()
with open(args.result) as f:
    phases = json.load(f)
if isinstance(phases, dict):
    phases = [phases]


def line(p, name):
    lat = p.get("latencyMilliseconds", {})
    settled = p.get("settledLatencyMilliseconds") or {}
    return (
        f"| {name} | {p.get('offeredDeliveriesPerSecond', 0):.0f} | {p['deliveriesPerSecond']:.0f} | "
        f"{lat.get('p50', float('nan')):.0f} | {lat.get('p99', float('nan')):.0f} | "
        f"{settled.get('p99', float('nan')):.0f} | {p.get('heldBack', 0)} | {p['lost']} | {p.get('sessionsEnded', 0)} | "
        f"{(p.get('serverPeakRSSKiB') or 0) / 1024:.0f} |"
    )


if args.recovery:
    print(line(phases[0], "3× for 30 s"))
    print(line(phases[1], "then ½× for 10 s"))
    during = phases[1].get("during")
    if during:
        print(f"seed 5 s into the second phase: exit {during['status']} after {during['tookMilliseconds']:.0f} ms")
else:
    print(line(phases[0], f"{args.factor}×"))
print(f"lease lost: {args.leases} time(s)")
