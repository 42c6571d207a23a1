#!/usr/bin/env python3
"""Throughput: 100 sandboxes that run `true`, 8 at a time, for rootsand and rootless podman.

Run as root:   python3 bench/throughput.py [--count N] [--parallel P] [--user NAME] [--rootsand PATH]

Like startup.py it re-executes itself as the unprivileged user. Each tool's batch is timed from the first
start to the last exit; every run must succeed. The processes of the user that appear during a batch and
are still there after it are listed per tool (podman's pause process, which outlives runs by design, is
started by a warm-up run first; its conmon processes linger as zombies until the benchmark exits). Tools
alternate batches: rootsand, podman, rootsand, podman. Stdlib only.
"""
import argparse
import concurrent.futures
import json
import os
import statistics
import sys
import time

from common import add_inner_options, add_user_options, failure, run_as_user, run_once, save

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "throughput.json")
BATCHES = 2
TIMEOUT = 120


def commands(rootsand, rootfs):
    return [("rootsand run -- true", [rootsand, "run", "--", "true"]),
            ("podman run --rootfs (runc)", ["podman", "run", "--rm", "--network", "none", "--runtime", "runc",
                                            "--rootfs", rootfs or "<no rootfs>", "/bin/true"])]


def my_processes():
    uid = os.getuid()
    return {p for p in os.listdir("/proc") if p.isdigit() and _owner(p) == uid and int(p) != os.getpid()}


def _owner(pid):
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def batch(argv, count, parallel):
    """(seconds, failures) for `count` runs of argv, `parallel` at a time."""
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        results = list(pool.map(lambda _: run_once(argv, TIMEOUT)[1], range(count)))
    return time.perf_counter() - t0, [why for r in results if (why := failure(r))]


def inner(args):
    out = []
    for name, argv in commands(args.rootsand, args.rootfs):
        r = {"name": name, "skipped": None, "seconds": []}
        if argv[0] == "podman" and not args.rootfs:
            r["skipped"] = args.podman_skip or "no rootfs"
        else:
            r["skipped"] = failure(run_once(argv, TIMEOUT)[1])  # warm-up; starts podman's pause process
        out.append(r)
    for _ in range(BATCHES):
        for r, (name, argv) in zip(out, commands(args.rootsand, args.rootfs)):
            if r["skipped"]:
                continue
            before = my_processes()
            seconds, failures = batch(argv, args.count, args.parallel)
            r["seconds"].append(round(seconds, 3))
            r.setdefault("left_behind", []).extend(d for p in sorted(my_processes() - before) if (d := _describe(p)))
            if failures:
                r["skipped"] = f"{len(failures)} of {args.count} runs failed: {failures[0]}"
    for r in out:
        if r["seconds"] and not r["skipped"]:
            r["per_second"] = round(args.count / statistics.median(r["seconds"]), 1)
    json.dump({"count": args.count, "parallel": args.parallel, "batches": BATCHES, "results": out},
              sys.stdout, indent=2)


def _describe(pid):
    """"PID (comm) STATE" of a process still there, else None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return f"{pid} {stat[stat.index('('):stat.rindex(')') + 1]} {stat[stat.rindex(')') + 2]}"


def main():
    p = argparse.ArgumentParser(description="Sandboxes per second, N at a time: rootsand against rootless podman.")
    p.add_argument("--count", type=int, default=100, help="sandboxes per batch (default 100)")
    p.add_argument("--parallel", type=int, default=8, help="at a time (default 8)")
    add_user_options(p)
    add_inner_options(p)
    args = p.parse_args()
    if args.inner:
        return inner(args)
    from startup import make_rootfs

    data = run_as_user(os.path.abspath(__file__), args, make_rootfs,
                       ["--count", str(args.count), "--parallel", str(args.parallel)])
    rows = ["| tool | batches of %d, %d at a time (s) | sandboxes/s |" % (args.count, args.parallel), "|---|---|---|"]
    for r in data["results"]:
        rows.append(f"| {r['name']} | " + (f"skipped: {r['skipped']} | -" if r["skipped"] else
                                           f"{', '.join(map(str, r['seconds']))} | {r['per_second']}") + " |")
    print("\n".join(rows))
    rs, pm = (r.get("per_second") for r in data["results"])
    if rs and pm:
        print(f"\nrootsand: {rs / pm:.2f}x podman's sandboxes per second")
    for r in data["results"]:
        left = r.get("left_behind", [])
        print(f"{r['name']}: left behind: " + (f"{len(left)} processes: {', '.join(left[:4])}" if left else "nothing"))
    save(RESULTS, data)


if __name__ == "__main__":
    main()
