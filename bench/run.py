#!/usr/bin/env python3
"""One entry point for the benchmarks that compare rootsand's cost with other tools.

Run as root:   python3 bench/run.py [--quick] [--proxy] [--json FILE] [--user NAME] [--rootsand PATH]

It runs startup.py (start-up against bwrap, unshare and rootless podman, interleaved), memory.py
(RSS/PSS of what each tool keeps resident) and throughput.py (100 sandboxes 8 at a time against podman),
takes the stages of `rootsand run -v -- true` (median of each), prints their tables, and writes all results into one JSON file. --quick takes 3 timed rounds instead of
15 and batches of 16: enough to show the scripts work, not for numbers.
--proxy adds proxy.py (--net proxy against slirp; --quick passed on). The longer benchmarks (fakeroot.py,
network.py, build_overhead.sh) are run on their own. Stdlib only.
"""
import argparse
import json
import os
import pwd
import re
import statistics
import subprocess
import sys

from common import PATH, add_user_options, save

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


STAGE_RE = re.compile(r"rootsand:\s+([0-9.]+)s (forked setup process|namespaces created|id maps written|"
                      r"PID 1 is|sandbox ended)")


def stages(user, rootsand, runs):
    """Median of each stage of `rootsand run -v -- true` (seconds since the launcher's fork), as the user."""
    pw = pwd.getpwnam(user)
    seen = {}
    for _ in range(runs):
        done = subprocess.run(["runuser", "-u", user, "--", "env", "-i", f"PATH={PATH}", f"HOME={pw.pw_dir}",
                               rootsand, "run", "-v", "--", "true"], cwd="/tmp", capture_output=True, text=True,
                              check=True)
        for at, stage in STAGE_RE.findall(done.stderr):
            seen.setdefault(stage, []).append(float(at) * 1e3)
    names = {"PID 1 is": "PID 1 forked", "sandbox ended": "sandbox ended (mounts, the command, tear-down)"}
    rows, previous = [], 0.0
    for stage, times in seen.items():
        at = statistics.median(times)
        rows.append({"stage": names.get(stage, stage), "at_ms": round(at, 2), "took_ms": round(at - previous, 2)})
        previous = at
    return rows


def main():
    p = argparse.ArgumentParser(description="rootsand's start-up and memory against bwrap, unshare and podman.")
    p.add_argument("--quick", action="store_true", help="3 timed rounds instead of 15 (a smoke run)")
    p.add_argument("--json", default=os.path.join(RESULTS, "run.json"), help="where to write all results")
    p.add_argument("--proxy", action="store_true", help="also run proxy.py (--net proxy against slirp)")
    add_user_options(p)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: run as root (the benchmarks drop to --user themselves)")
    common = ["--user", args.user, "--rootsand", args.rootsand]
    runs = "3" if args.quick else "15"
    memory_json = os.path.join(RESULTS, "memory.json")
    count = "16" if args.quick else "100"
    proxy_json = os.path.join(RESULTS, "proxy.json")
    scripts = (("startup.py", ["--runs", runs]), ("memory.py", ["--json", memory_json]),
               ("throughput.py", ["--count", count]))
    if args.proxy:
        scripts += (("proxy.py", ["--json", proxy_json] + (["--quick"] if args.quick else [])),)
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
    print("## stages of `rootsand run -v -- true` (medians; ms since the launcher's fork)\n")
    per_stage = stages(args.user, args.rootsand, int(runs))
    print("| stage | at ms | took ms |\n|---|---|---|")
    for row in per_stage:
        print(f"| {row['stage']} | {row['at_ms']} | {row['took_ms']} |")
    print()
    results = {"quick": args.quick, "startup": startup, "memory": memory, "throughput": throughput,
               "stages": per_stage}
    if args.proxy:
        with open(proxy_json) as f:
            results["proxy"] = json.load(f)
    save(args.json, results)


if __name__ == "__main__":
    main()
