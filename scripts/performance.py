#!/usr/bin/env python3
"""Reproduces the performance table of the README: every server against
redis-server, measured with `client load` in the same run, as ratios.

    python3 scripts/performance.py            # 3 rounds, medians (about 13 minutes on 2 cores)
    python3 scripts/performance.py --rounds 1 --seconds 2   # a quick look

It builds the workspace in release mode, installs redis-server with apt-get
when it is missing (as root), compiles scripts/epoll-load.c (the C
yardstick for the load generator) and scripts/epoll-floor.c (the floor: a
bare C epoll server that only answers), then runs each workload of
docs/targets.md's table once per round and prints the median of the
rounds. Everything runs
on 127.0.0.1. Absolute rates vary between machines and runs; the ratios,
taken within one round, are what the targets are about.
"""

import argparse
import ctypes
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import socket
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
QUESTION = "Beautiful is better than?"

# The CPUs this script may use (all of them, unless it runs under taskset
# or in a cpuset): every child is started on them.
CPUS = sorted(os.sched_getaffinity(0))

# srv-hybrid's default, a thread per CPU, given explicitly: the default
# counts only the CPUs the process may use, and the one-connection row
# keeps it on one core (see SHARED_CORE).
WORKERS = ["--workers", str(len(CPUS))]

# (label, binary, extra flags)
SERVERS = [
    ("srv-single", "srv-single", []),
    ("srv-threaded (64 workers)", "srv-threaded", ["--workers", "64"]),
    ("srv-threaded (per connection)", "srv-threaded", ["--per-connection"]),
    ("srv-poll", "srv-poll", []),
    ("srv-poll --poller epoll", "srv-poll", ["--poller", "epoll"]),
    ("srv-async", "srv-async", []),
    ("srv-hybrid (work stealing)", "srv-hybrid", ["--runtime", "work-stealing", *WORKERS]),
    ("srv-hybrid (per core)", "srv-hybrid", ["--runtime", "per-core", *WORKERS]),
    ("srv-uring", "srv-uring", []),
]

# The event-driven servers against the floor (epoll-floor.c), measured just
# before each of them: the readiness loops must stay within 5% of it (srv-poll
# on raw epoll; on the portable polling crate, whose every wait costs four
# more system calls, within 10% at 50 connections, where one wait serves
# many answers), and srv-uring, which makes fewer system calls than any
# readiness loop can, must beat it where there is something to batch.
FLOOR_TARGETS = {
    "srv-poll --poller epoll": {"1x1": 0.95, "50x1": 0.95, "50x16": 0.95},
    "srv-poll": {"1x1": None, "50x1": 0.9, "50x16": 0.9},
    "srv-async": {"1x1": 0.95, "50x1": 0.95, "50x16": 0.95},
    "srv-uring": {"1x1": None, "50x1": 1.0, "50x16": 1.1},
}
# With one connection there is nothing to batch: srv-uring against srv-poll
# on raw epoll in the same round.
URING_VS_POLL_1X1 = 0.95

# The targets of docs/targets.md, per workload: label prefix -> minimum ratio.
TARGETS = {
    "1x1": {"": 0.95},
    "50x1": {"srv-poll": 1.0, "srv-async": 1.0, "srv-hybrid": 0.8, "srv-threaded": 0.6,
             "srv-uring": 1.0},
    "50x16": {"srv-poll": 1.0, "srv-async": 1.0, "srv-hybrid": 0.8, "srv-uring": 1.0},
    "wait": {"srv-threaded": 0.95, "srv-poll": 0.95, "srv-async": 0.95, "srv-hybrid": 0.95,
             "srv-uring": 0.95},
}


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def setup():
    log("building (cargo build --release) ...")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if shutil.which("redis-server") is None:
        if os.geteuid() != 0:
            sys.exit("redis-server is missing: install it (apt-get install redis-server) and run again")
        log("installing redis-server ...")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True,
                       stdout=subprocess.DEVNULL)
    built = tempfile.mkdtemp(prefix="zen-perf-")
    programs = []
    for name in ["epoll-load", "epoll-floor"]:
        program = os.path.join(built, name)
        subprocess.run(["cc", "-O2", "-o", program, os.path.join(ROOT, "scripts", name + ".c")],
                       check=True)
        programs.append(program)
    refused = uring_refused()
    if refused:
        log(f"skipping srv-uring: {refused}")
        SERVERS[:] = [server for server in SERVERS if server[1] != "srv-uring"]
        del FLOOR_TARGETS["srv-uring"]
    return programs


def uring_refused():
    """Why srv-uring cannot serve here (a kernel or a seccomp profile that
    refuses io_uring: it says so in one line and exits), or None."""
    proc = subprocess.Popen([os.path.join(BIN, "srv-uring"), "-p", "0", "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.stdout.readline().startswith("listening on"):
        proc.terminate()
        proc.wait()
        return None
    proc.wait()
    return proc.stderr.read().strip() or f"exit status {proc.returncode}"


# The one-connection row runs the server and the client on this one core.
# With one question in flight, each side sleeps while the other works; on
# separate cores every answer and every question must wake an idle core,
# and how fast that happens is up to the machine (in a virtual machine, the
# hypervisor), not the server: measured so, the same server gave anywhere
# from 2,300 to 6,200 answers/s from one run to the next on a shared
# 2-core VM. On one core the round trip is the two programs' own work and
# two context switches, and the figures repeat within a few percent.
SHARED_CORE = {CPUS[-1]}


# Everywhere else the load generator and the server share every core, and
# the servers (redis-server too) run at a lower priority than the load
# generator, at SERVER_NICE, as `client compare` runs them. At equal
# priority, each question wakes a server thread that preempts the load
# generator on its core (the kernel favours a thread that has just woken):
# a server with more than one thread then takes the load generator's CPU
# from it, and the load generator becomes the limit. Measured here at 50
# connections: a two-runtime srv-hybrid preempted the load generator
# 158,000 times in 2.5 s, and gave 222,000 answers/s at equal priority,
# 294,000 with the load generator 10 nice levels above it, while
# single-threaded servers (redis-server included) did not move. On its own
# machine, as in real use, a load generator is preempted by no server.
SERVER_NICE = 10


def pinned(cores):
    """A preexec_fn that keeps the child on `cores` (None: anywhere)."""
    if cores is None:
        return None
    return lambda: os.sched_setaffinity(0, cores)


# A load generator runs at this script's priority, on `cores` if given.
as_load_generator = pinned


def as_server(cores):
    """A preexec_fn for a server: on `cores` if given (the shared core, at
    the load generator's priority), else anywhere, SERVER_NICE levels below
    this script and the load generators."""
    if cores is None:
        return lambda: os.nice(SERVER_NICE)
    return pinned(cores)


class Server:
    """A server binary started on port 0, stopped with SIGTERM; used as
    `with Server(...) as server:`, so that it stops whatever happens."""

    def __init__(self, binary, flags, cores=None):
        self.proc = subprocess.Popen([os.path.join(BIN, binary), "-p", "0", "-q", *flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     preexec_fn=as_server(cores))
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"{binary} did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Redis(Server):
    def __init__(self, cores=None):
        port = free_port()
        self.proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                      "--appendonly", "no", "--bind", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=as_server(cores))
        self.port = port
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load(port, conns, pipeline, seconds, extra=(), cores=None):
    """`client load`'s report; its rate counts as 0 if any answer was wrong
    or any connection failed (the client then exits 1 after its report)."""
    out = subprocess.run([os.path.join(BIN, "client"), "load", "-p", str(port), "-c", str(conns),
                          "--pipeline", str(pipeline), "-d", f"{seconds}s", "--warmup", "500ms",
                          "--json", *extra], capture_output=True, text=True,
                         preexec_fn=as_load_generator(cores))
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"client load failed: {out.stderr.strip()}") from None
    if report["errors"] != 0 or out.returncode != 0:
        log(f"  {report['errors']} errors on port {port}: rate counted as 0")
        report["rps"] = 0.0
    return report


def ask_redis(port, conns, pipeline, seconds, cores=None):
    return load(port, conns, pipeline, seconds, ["--send", "PING\\r\\n", "--expect", "+PONG\\r\\n"],
                cores)


def cpu_times():
    """The machine's CPU time so far: (all, stolen), in ticks, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, counted in user]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


class Itimerspec(ctypes.Structure):
    _fields_ = [("interval_s", ctypes.c_long), ("interval_ns", ctypes.c_long),
                ("value_s", ctypes.c_long), ("value_ns", ctypes.c_long)]


def kernel_timer_ms(samples=200):
    """How long a 10 ms kernel timer (a timerfd, as srv-poll's and
    srv-async's waits use) takes to wake a thread that waits for nothing
    else, median of `samples`: the machine's own lateness, part of every
    `--work wait:10ms` round trip before any server work is counted."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.timerfd_create(time.CLOCK_MONOTONIC, 0)
    if fd < 0:
        return float("nan")
    lasted = []
    try:
        for _ in range(samples):
            started = time.perf_counter()
            if libc.timerfd_settime(fd, 0, ctypes.byref(Itimerspec(0, 0, 0, 10_000_000)),
                                    None) != 0:
                return float("nan")
            os.read(fd, 8)
            lasted.append(time.perf_counter() - started)
    finally:
        os.close(fd)
    return 1000 * statistics.median(lasted)


def one_round(seconds, epoll_load, epoll_floor):
    rates = {}  # (workload, label) -> value
    started = cpu_times()
    rates[("machine", "timer_ms")] = kernel_timer_ms()

    for workload, conns, pipeline in [("1x1", 1, 1), ("50x1", 50, 1), ("50x16", 50, 16)]:
        cores = SHARED_CORE if workload == "1x1" else None
        # redis-server is measured again just before each server, and each
        # ratio is taken against that measurement: on a shared machine the
        # rate of everything drifts within a round, and a pair measured
        # seconds apart drifts least.
        references = []
        with Redis(cores) as redis:
            for label, binary, flags in SERVERS:
                if label == "srv-single" and workload != "1x1":
                    continue  # one client at a time: 49 connections would only wait
                reference = ask_redis(redis.port, conns, pipeline, seconds, cores)["rps"]
                references.append(reference)
                if label in FLOOR_TARGETS:
                    with Server(epoll_floor, [], cores) as floor:
                        rates[(workload + "/floor", label)] = load(
                            floor.port, conns, pipeline, seconds, cores=cores)["rps"]
                with Server(binary, flags, cores) as server:
                    rate = load(server.port, conns, pipeline, seconds, cores=cores)["rps"]
                rates[(workload, label)] = rate
                rates[(workload + "/redis", label)] = reference
                rates[(workload + "/ratio", label)] = rate / reference if reference else 0.0
                floor = rates.get((workload + "/floor", label))
                if floor is not None:
                    rates[(workload + "/floor-ratio", label)] = rate / floor if floor else 0.0
        rates[(workload, "redis-server")] = statistics.median(references)  # for --json
        log(f"  {workload} done")

    # The client gets every core here, not its default half: the servers
    # are nearly idle (10 ms per answer), and the 64 answers of a cycle
    # arrive together, so one client thread handling them in turn would
    # add its own queue to every round trip, whichever server it measures.
    all_cores = ["--threads", str(len(CPUS))]
    for label, binary, flags in SERVERS[1:]:
        with Server(binary, [*flags, "--work", "wait:10ms"]) as server:
            rates[("wait", label)] = load(server.port, 64, 1, seconds, all_cores)["rps"]
    log("  wait:10ms done")

    for label, binary, flags in SERVERS[3:]:
        with Server(binary, flags) as server:
            before = server.rss_kib()
            with subprocess.Popen([os.path.join(BIN, "client"), "hold", "-p", str(server.port),
                                   "-c", "10000", "-d", f"{seconds + 6}s", "--json"],
                                  stdout=subprocess.PIPE, text=True,
                                  preexec_fn=as_load_generator(None)) as hold:
                time.sleep(4)  # the 10,000 connects are done well within this
                busy = load(server.port, 4, 1, seconds)
                during = server.rss_kib()
                held = json.loads(hold.communicate()[0])
        per_conn = (during - before) * 1024 / max(held["open"], 1)
        rates[("c10k", label)] = per_conn
        rates[("c10k-open", label)] = held["open"]
        rates[("c10k-p99", label)] = busy["latency_us"]["p99"]
    log("  C10K done")

    with Server("srv-poll", []) as server:
        ours = load(server.port, 50, 1, seconds, ["--question", QUESTION, "--threads", "1"])["rps"]
        theirs = float(subprocess.run([epoll_load, "127.0.0.1", str(server.port), "50",
                                       str(seconds), QUESTION, "ugly."], capture_output=True,
                                      text=True, check=True,
                                      preexec_fn=as_load_generator(None)).stdout)
    rates[("loadgen", "client load")] = ours
    rates[("loadgen", "epoll-load.c")] = theirs
    log("  load generator done")
    ended = cpu_times()
    # In a virtual machine, the share of its CPU time that the host gave to
    # others: round trips stretch with it, whatever the server.
    rates[("machine", "stolen")] = (ended[1] - started[1]) / max(ended[0] - started[0], 1)
    return rates


def shown(ratio):
    """A ratio to two decimals, cut rather than rounded, so that a ratio
    shown at a target's value has met it."""
    return f"{math.floor(ratio * 100) / 100:.2f}"


def target_for(workload, label):
    for prefix, target in TARGETS.get(workload, {}).items():
        if label.startswith(prefix):
            return target
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds to take the median of")
    parser.add_argument("--seconds", type=float, default=3, help="measured seconds per load")
    parser.add_argument("--json", metavar="FILE", help="also write every round's figures here")
    args = parser.parse_args()
    epoll_load, epoll_floor = setup()
    rounds = []
    for i in range(args.rounds):
        log(f"round {i + 1} of {args.rounds}")
        rounds.append(one_round(args.seconds, epoll_load, epoll_floor))

    def median(key):
        return statistics.median(r[key] for r in rounds)

    def ratio(workload, label, reference):
        return statistics.median(r[(workload, label)] / r[reference] for r in rounds)

    print(f"Measured {time.strftime('%Y-%m-%d')} on {len(CPUS)} cores, loopback; "
          f"median of {args.rounds} round(s), {args.seconds:g} s per load. redis-server is "
          f"measured just before each server, and the ratio is the median over the rounds of "
          f"each round's quotient of the two (so it can differ from the quotient of the two "
          f"medians shown). The one-connection rows run server and client on one shared "
          f"core; elsewhere the load generators share every core with the server, which "
          f"runs at nice {SERVER_NICE}, below them; `--work wait` "
          f"gives the client every core. CPU time stolen by the "
          f"hypervisor during a round: {100 * median(('machine', 'stolen')):.1f}% (median; "
          f"{100 * min(r[('machine', 'stolen')] for r in rounds):.1f}% to "
          f"{100 * max(r[('machine', 'stolen')] for r in rounds):.1f}%).\n")
    print("| workload | server | answers/s | redis-server just before | ratio | target | |")
    print("|---|---|---:|---:|---:|---:|---|")
    names = {"1x1": "1 connection, 1 in flight", "50x1": "50 connections, 1 in flight",
             "50x16": "50 connections, 16 in flight"}

    def row(workload, label, value, redis="", r="", t=None, met=None, target=""):
        if t is not None:
            met, target = r >= t, f"≥ {t:.2f}"
        ok = "" if met is None else ("met" if met else "**missed**")
        r = r if isinstance(r, str) else shown(r)
        print(f"| {workload} | {label} | {value} | {redis} | {r} | {target} | {ok} |")

    for workload in ["1x1", "50x1", "50x16"]:
        for label, _, _ in SERVERS:
            if (workload, label) not in rounds[0]:
                continue
            row(names[workload], label, f"{median((workload, label)):,.0f}",
                f"{median((workload + '/redis', label)):,.0f}",
                median((workload + "/ratio", label)), target_for(workload, label))
        for label in FLOOR_TARGETS:
            if (workload + "/floor", label) not in rounds[0]:
                continue
            row(names[workload], f"{label} vs epoll-floor.c (measured just before it)",
                f"{median((workload, label)):,.0f} vs {median((workload + '/floor', label)):,.0f}",
                "", median((workload + "/floor-ratio", label)), FLOOR_TARGETS[label][workload])
        if workload == "1x1" and ("1x1", "srv-uring") in rounds[0]:
            epoll = "srv-poll --poller epoll"
            row(names[workload], f"srv-uring vs {epoll} (same round)",
                f"{median(('1x1', 'srv-uring')):,.0f} vs {median(('1x1', epoll)):,.0f}", "",
                ratio("1x1", "srv-uring", ("1x1", epoll)), URING_VS_POLL_1X1)
    timer_ms = median(("machine", "timer_ms"))
    row("64 connections, `--work wait:10ms`", f"(a 10 ms kernel timer alone here fires after "
        f"{timer_ms:.3f} ms, median, timed from Python: at that pace 64 connections make "
        f"at most {64 / (timer_ms / 1000):,.0f}/s, before any round trip)", "")
    for label, _, _ in SERVERS[1:]:
        rate = median(("wait", label))
        row("64 connections, `--work wait:10ms` (ideal 6,400/s)", label, f"{rate:,.0f}", "",
            rate / 6400, target_for("wait", label))
    for label, _, _ in SERVERS[3:]:
        per_conn = median(("c10k", label))
        row("10,000 idle connections: server RSS per connection", label,
            f"{per_conn:,.0f} B ({median(('c10k-open', label)):,.0f} held; busy p99 "
            f"{median(('c10k-p99', label)):,.0f} µs)", met=per_conn <= 2048, target="≤ 2,048 B")
    r = ratio("loadgen", "client load", ("loadgen", "epoll-load.c"))
    row("load generator vs epoll-load.c (srv-poll, 50 connections)", "client load",
        f"{median(('loadgen', 'client load')):,.0f} vs {median(('loadgen', 'epoll-load.c')):,.0f}",
        "", r, 0.9)
    if args.json:
        with open(args.json, "w") as out:
            json.dump([{f"{w}/{l}": v for (w, l), v in r.items()} for r in rounds], out, indent=1)


if __name__ == "__main__":
    main()
