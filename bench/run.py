#!/usr/bin/env python3
"""One entry point for the benchmarks that compare rootsand's cost with other tools.

Run as root:   python3 bench/run.py [--quick] [--json FILE] [--user NAME] [--rootsand PATH]

It runs startup.py (start-up against bwrap, unshare and rootless podman, interleaved), memory.py
(RSS/PSS of what each tool keeps resident) and throughput.py (100 sandboxes 8 at a time against podman),
prints their tables, and writes all results into one JSON file. --quick takes 3 timed rounds instead of
15 and batches of 16: enough to show the scripts work, not for numbers.
The longer benchmarks (fakeroot.py, network.py, build_overhead.sh) are run on their own. Stdlib only.
"""
import argparse
import json
import os
import subprocess
import sys

from common import DEFAULT_ROOTSAND, save

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def main():
    p = argparse.ArgumentParser(description="rootsand's start-up and memory against bwrap, unshare and podman.")
    p.add_argument("--quick", action="store_true", help="3 timed rounds instead of 15 (a smoke run)")
    p.add_argument("--json", default=os.path.join(RESULTS, "run.json"), help="where to write all results")
    p.add_argument("--user", default="rootsand-test", help="unprivileged user to run as (default rootsand-test)")
    p.add_argument("--rootsand", default=DEFAULT_ROOTSAND, help=f"rootsand executable (default {DEFAULT_ROOTSAND})")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: run as root (the benchmarks drop to --user themselves)")
    common = ["--user", args.user, "--rootsand", args.rootsand]
    runs = "3" if args.quick else "15"
    memory_json = os.path.join(RESULTS, "memory.json")
    count = "16" if args.quick else "100"
    scripts = (("startup.py", ["--runs", runs]), ("memory.py", ["--json", memory_json]),
               ("throughput.py", ["--count", count]))
    for script, extra in scripts:
        print(f"## {script}\n", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, script), *extra, *common], check=True)
        print(flush=True)
    with open(os.path.join(RESULTS, "startup.json")) as f:
        startup = json.load(f)
    with open(memory_json) as f:
        memory = json.load(f)
    with open(os.path.join(RESULTS, "throughput.json")) as f:
        throughput = json.load(f)
    save(args.json, {"quick": args.quick, "startup": startup, "memory": memory, "throughput": throughput})


if __name__ == "__main__":
    main()
