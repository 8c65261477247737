#!/usr/bin/env python3
"""Estimates how long a cold build would take on an idle machine with N cores, from the
`cargo-timing.html` of a build that shared its machine, and the build's user + system CPU
seconds (from `/usr/bin/time -v`).

On a shared machine each unit's wall duration is stretched by the other load, so the wall
time of the run says little. This replays the run's units in their dependency order (a unit
starts when what it waits for is done, or has its metadata for pipelined units) on N cores,
each unit costing its measured duration scaled so that the durations add up to the CPU time.
The scale is uniform, which assumes the stretch was even over the run: an estimate, not a
measurement. One unit is one core (thin LTO's parallel codegen is counted as one core).

Usage: docs/bench/build-estimate.py target/cargo-timings/cargo-timing.html CPU_SECONDS [CORES]
"""
import heapq
import json
import re
import sys


def main() -> None:
    path, cpu = sys.argv[1], float(sys.argv[2])
    cores = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    html = open(path, encoding="utf-8").read()
    units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", html, re.S).group(1))
    scale = cpu / sum(u["duration"] for u in units)
    pos = {u["i"]: j for j, u in enumerate(units)}
    waits = {j: [] for j in range(len(units))}  # (unit waited for, needs it finished)
    for j, u in enumerate(units):
        for v in u.get("unlocked_units", []):
            waits[pos[v]].append((j, True))
        for v in u.get("unlocked_rmeta_units", []):
            waits[pos[v]].append((j, False))
    cost = [u["duration"] * scale for u in units]
    meta = [(u.get("rmeta_time") or u["duration"]) * scale for u in units]

    done, has_meta = set(), set()
    pending = sorted(range(len(units)), key=lambda j: units[j]["start"])
    events = []  # (time, kind, unit): kind 0 = metadata ready, 1 = finished
    busy, now = 0, 0.0
    while pending or events:
        for j in list(pending):
            if busy == cores:
                break
            if all((p in done) if full else (p in has_meta) for p, full in waits[j]):
                pending.remove(j)
                busy += 1
                heapq.heappush(events, (now + meta[j], 0, j))
                heapq.heappush(events, (now + cost[j], 1, j))
        if not events:
            break
        now, kind, j = heapq.heappop(events)
        if kind == 0:
            has_meta.add(j)
        else:
            done.add(j)
            has_meta.add(j)
            busy -= 1
    print(
        f"{len(units)} units, {cpu:.0f} CPU-s; estimated on {cores} idle cores: "
        f"{now:.0f} s ({now / 60:.1f} min); lower bound CPU/cores {cpu / cores:.0f} s"
    )


if __name__ == "__main__":
    main()
