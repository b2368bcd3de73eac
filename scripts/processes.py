#!/usr/bin/env python3
"""Processes against threads, measured: the same load on two processes of a
single-threaded server (srv-single and srv-poll under `--processes 2`)
and on one process of many threads (srv-threaded, srv-hybrid), with the
resident memory of every process of each server added up.

    python3 scripts/processes.py              # 3 rounds, medians (about 2 minutes)
    python3 scripts/processes.py --rounds 1 --seconds 2

The load is `client load` with 50 connections, one question in flight on
each, for a few seconds; the memory is sampled every 50 ms during it, and
the largest total is reported. Everything runs on 127.0.0.1, started as
scripts/performance.py starts servers (at a lower priority than the load).
"""

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import performance  # noqa: E402  (its Server, load and build)

CPUS = str(len(performance.CPUS))
SERVERS = [
    ("srv-single --processes 2", "srv-single", ["--processes", "2"]),
    ("srv-poll --processes 2", "srv-poll", ["--processes", "2"]),
    ("srv-threaded --workers 64", "srv-threaded", ["--workers", "64"]),
    ("srv-hybrid (work stealing)", "srv-hybrid", ["--workers", CPUS]),
]
CONNECTIONS = 50


def tree_rss_kib(pid):
    """Resident memory of `pid` and all its children, in KiB."""
    total = 0
    pids = [pid]
    while pids:
        p = pids.pop()
        try:
            with open(f"/proc/{p}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            with open(f"/proc/{p}/task/{p}/children") as children:
                pids.extend(int(c) for c in children.read().split())
        except (OSError, StopIteration):
            pass
    return total


def processes_of(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return 1 + len(children.read().split())
    except OSError:
        return 0


def measure(binary, flags, seconds):
    with performance.Server(binary, flags) as server:
        time.sleep(0.3)  # the workers start after `listening on`
        peak, done = [0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], tree_rss_kib(server.proc.pid))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        procs = processes_of(server.proc.pid)
        try:
            rate = performance.load(server.port, CONNECTIONS, 1, seconds)["rps"]
        finally:
            done.set()
            sampler.join()
        return rate, peak[0], procs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3)
    args = parser.parse_args()
    performance.log("building (cargo build --release) ...")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=performance.ROOT, check=True)
    results = {label: [] for label, _, _ in SERVERS}
    for round_ in range(args.rounds):
        for label, binary, flags in SERVERS:
            results[label].append(measure(binary, flags, args.seconds))
        performance.log(f"round {round_ + 1} of {args.rounds} done")
    print(f"| server ({CONNECTIONS} connections, 1 in flight) | processes | answers/s | RSS, all processes |")
    print("|---|---|---|---|")
    for label, _, _ in SERVERS:
        runs = results[label]
        rate = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        procs = max(r[2] for r in runs)
        print(f"| {label} | {procs} | {rate:,.0f} | {rss / 1024:.1f} MiB |")


if __name__ == "__main__":
    main()
