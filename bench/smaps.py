#!/usr/bin/env python3
"""Where a running gateway's memory is: its mappings grouped, largest first.

    python3 bench/smaps.py PID [--top N]

Reads /proc/PID/smaps and sums RSS, PSS and anonymous memory per group:

- the executable itself (code and read-only data, file-backed);
- each compiled adapter (`*.cwasm`): its machine code, and the memory image
  every instance maps copy-on-write (VmRSS counts an image page once per
  instance that touched it; PSS divides it among them);
- the instance pool's reservations (anonymous mappings of 1 GiB or more:
  linear memories and tables, of which only touched pages count);
- other anonymous mappings by size (the heap's extents, thread and fiber
  stacks, one linear memory's pieces), with how many there are of that
  size: N mappings of one size that grow with open streams are per-stream
  costs.

Take it idle and again with streams held (bench/README.md, Memory): the
difference divided by the streams is the cost of one.
"""

import argparse
import collections
import os
import re


def groups(pid):
    sizes = collections.defaultdict(lambda: [0, 0, 0, 0])  # rss, pss, anon (KiB), mappings
    exe = os.path.realpath(f"/proc/{pid}/exe")
    current = None
    for line in open(f"/proc/{pid}/smaps"):
        head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$", line)
        if head:
            lo, hi = int(head[1], 16), int(head[2], 16)
            perms, path = head[3], head[4].strip()
            size = hi - lo
            if path == exe:
                name = f"executable ({os.path.basename(exe)})"
            elif path.endswith(".cwasm"):
                name = f"adapter {os.path.basename(path)[:12]}…"
            elif path:
                name = os.path.basename(path)
            elif size >= 1 << 30:
                name = f"instance pool reservation ({size >> 30} GiB)"
            else:
                name = f"anonymous {perms} of {size >> 10} KiB"
            current = sizes[name]
            current[3] += 1
        elif current is not None:
            field, _, value = line.partition(":")
            index = {"Rss": 0, "Pss": 1, "Anonymous": 2}.get(field)
            if index is not None:
                current[index] += int(value.split()[0])
    return sizes


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pid", type=int)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    sizes = groups(args.pid)
    total = [sum(g[i] for g in sizes.values()) for i in range(3)]
    print(f"{'RSS MB':>8} {'PSS MB':>8} {'anon MB':>8} {'maps':>7}  group")
    print(f"{total[0] / 1024:8.1f} {total[1] / 1024:8.1f} {total[2] / 1024:8.1f} {'':>7}  all")
    for name, (rss, pss, anon, count) in sorted(sizes.items(), key=lambda kv: -kv[1][0])[: args.top]:
        print(f"{rss / 1024:8.2f} {pss / 1024:8.2f} {anon / 1024:8.2f} {count:7}  {name}")


if __name__ == "__main__":
    main()
