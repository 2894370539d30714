#!/usr/bin/python3
"""chaos_blame.py - which fault each violation of a chaos run followed:
for every id t/py/invariants.py named (its --json output), the faults that
t/chaos.sh injected in the WINDOW seconds before and after that saga's Run
was sent, counted by violation kind. A hint for whoever reads the report
(several faults overlap; a violation near no fault is worth a look too),
never a verdict.

  chaos_blame.py IDS.jsonl INVARIANTS.json FAULTS.log [WINDOW]

FAULTS.log: one "UNIX_MS KIND" line per fault, as t/chaos.sh writes it.
"""

import bisect
import json
import sys


def main():
    ids_path, inv_path, faults_path = sys.argv[1:4]
    window = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    sent = {}
    with open(ids_path) as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "sent_unix_ms" in d:
                sent.setdefault(d["id"], d["sent_unix_ms"])
    faults = []
    with open(faults_path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 2:
                faults.append((int(p[0]), p[1]))
    faults.sort()
    times = [t for t, _ in faults]
    inv = json.load(open(inv_path))
    w = int(window * 1000)
    for kind, ids in sorted(inv.get("ids", {}).items()):
        near = {}
        for i in ids:
            t = sent.get(i)
            if t is None:
                continue
            lo = bisect.bisect_left(times, t - w)
            hi = bisect.bisect_right(times, t + w)
            ks = sorted({k for _, k in faults[lo:hi]}) or ["(none)"]
            for k in ks:
                near[k] = near.get(k, 0) + 1
        print("blame %s (%d ids): faults within %gs of the Run: %s" % (
            kind, len(ids), window, json.dumps(
                dict(sorted(near.items(), key=lambda kv: -kv[1])))))


if __name__ == "__main__":
    main()
