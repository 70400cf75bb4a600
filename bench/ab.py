#!/usr/bin/env python3
"""Compare Transit binaries side by side: one change, measured in one run.

    python3 bench/ab.py [--reps N] [--secs S] BINARY_A BINARY_B [...]

Each repetition starts every binary in turn on a fresh data directory, in
front of the same mock upstream, with the harness's configuration (auth,
limits, billing, the Wasm adapter), and measures with wrk: the median and
p99 at one connection, requests per second at 32, and the gateway's CPU
time per request at 32 (user + system, all threads, from /proc). Prints each
run and then the medians per binary. CPU per request is the steadiest of
these on a noisy machine: judge a change on it first.

Build the binaries first (e.g. `cargo build --release -p transit -p
transit-bench`, copying `target/release/transit` aside before the change).
"""

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def cpu_ticks(pid):
    """User + system clock ticks of every thread of `pid`."""
    total = 0
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            fields = open(stat).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binaries", nargs="+", help="Transit executables to compare")
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--secs", type=int, default=4, help="seconds per wrk run")
    args = ap.parse_args()
    binaries = [os.path.abspath(b) for b in args.binaries]
    for b in binaries:
        if not os.access(b, os.X_OK):
            sys.exit(f"not an executable: {b}")
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    harness.raise_fd_limit()
    bench = harness.Bench(argparse.Namespace(secs=args.secs, no_litellm=True),
                          tempfile.mkdtemp(prefix="transit-ab-"))
    start = bench.procs.start
    runs = {b: {"c1_p50_us": [], "c1_p99_us": [], "c32_rps": [], "c32_cpu_us_per_request": []}
            for b in binaries}
    try:
        bench.start_mock()
        body = bench.body_file("chat", harness.chat_body("bench"))
        for rep in range(args.reps):
            for i, binary in enumerate(binaries):
                def start_binary(name, argv, env=None, cwd=None, binary=binary):
                    if name == "transit":
                        argv = [binary] + argv[1:]
                    return start(name, argv, env=env, cwd=cwd)

                bench.procs.start = start_binary
                pid = bench.start_transit(name=f"transit-{rep}-{i}")
                bench.wrk("transit", body, 32)  # warm up
                c1 = bench.wrk("transit", body, 1)
                before = cpu_ticks(pid)
                c32 = bench.wrk("transit", body, 32)
                cpu = (cpu_ticks(pid) - before) * tick_us / max(c32["requests"], 1)
                bench.procs.stop("transit")
                run = runs[binary]
                run["c1_p50_us"].append(c1["latency"]["p50_us"])
                run["c1_p99_us"].append(c1["latency"]["p99_us"])
                run["c32_rps"].append(c32["rps"])
                run["c32_cpu_us_per_request"].append(cpu)
                print(f"rep {rep} {binary}: c1 p50 {c1['latency']['p50_us']} µs, "
                      f"c32 {c32['rps']:.0f} req/s, {cpu:.1f} µs CPU per request", flush=True)
    finally:
        bench.cleanup()
    print()
    for binary, run in runs.items():
        medians = {k: round(statistics.median(v), 1) for k, v in run.items()}
        print(binary, json.dumps(medians))


if __name__ == "__main__":
    main()
