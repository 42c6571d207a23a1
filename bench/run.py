#!/usr/bin/env python3
"""One entry point for the benchmarks that compare rootsand's cost with other tools.

Run as root:   python3 bench/run.py [--quick] [--proxy | --all] [--json FILE] [--user NAME] [--rootsand PATH]

It runs startup.py (start-up against bwrap, unshare and rootless podman, interleaved), memory.py
(RSS/PSS of what each tool keeps resident), throughput.py (100 sandboxes 8 at a time against podman) and
relay.py (`cat` of 2 MB on a terminal, under script and tmux, against the host and bwrap), takes the stages
of `rootsand run -v [--net slirp] -- true` (median of each), prints their tables, and writes all results into one JSON file. --quick takes 3 timed rounds instead of
15, batches of 16 and 200 kB for relay.py: enough to show the scripts work, not for numbers.
--proxy adds proxy.py (--net proxy against slirp; --quick passed on). --all adds it and the longer
benchmarks of the other issues: fakeroot.py, network.py and build_overhead.sh (each also runs on its own). Stdlib only.
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


STAGE_RE = re.compile(r"^rootsand:\s+([0-9.]+)s (.*)$", re.M)
# -v's lines, without what changes from run to run (pids, the profile's name, the exit status)
STAGE_NAMES = [("command line read", "interpreter's rest, imports, command line"), ("profile", "profile read"),
               ("host facts", "host facts read"), ("plan made", "plan made"),
               ("forked setup process", "launcher prepared, setup process forked"), ("namespaces created", "unshare"),
               ("id maps written", "id maps (newuidmap, newgidmap)"), ("slirp4netns ready", "slirp4netns started"),
               ("PID 1 is", "PID 1 forked"), ("sandbox built", "mounts (PID 1 builds the file system)"),
               ("the command runs", "exec: the command's execve"), ("sandbox ended", "the command (true) and its exit"),
               ("cleaned up", "tear-down")]
EXECVE = "exec: the command's execve"


def _stage_name(message):
    for prefix, name in STAGE_NAMES:
        if message.startswith(prefix):
            return name
    return None


def stages(user, rootsand, runs, extra=()):
    """Median of each stage of `rootsand run -v [EXTRA] -- true`, as the user: ms since rootsand's first line
    of Python (what -v times from), and the wall time around it (the interpreter's start before that line,
    its exit after the last)."""
    import time

    pw = pwd.getpwnam(user)
    seen, walls = {}, []
    argv = ["runuser", "-u", user, "--", "env", "-i", f"PATH={PATH}", f"HOME={pw.pw_dir}", rootsand, "run", "-v",
            *extra, "--", "true"]
    for round_number in range(runs + 1):
        start = time.monotonic()
        done = subprocess.run(argv, cwd="/tmp", capture_output=True, text=True, check=True)
        wall = (time.monotonic() - start) * 1e3
        if round_number == 0:
            continue  # a warm-up
        last = 0.0
        for at, message in STAGE_RE.findall(done.stderr):
            name = _stage_name(message)
            if name:
                seen.setdefault(name, []).append(float(at) * 1e3)
                last = float(at) * 1e3
        walls.append(wall - last)
    rows, previous = [], 0.0
    for name, times in seen.items():
        at = statistics.median(times)
        rows.append({"stage": name, "at_ms": round(at, 2), "took_ms": round(at - previous, 2)})
        previous = at
    rows.append({"stage": "runuser, the interpreter's start and exit (wall time outside -v's first and last line)",
                 "at_ms": None, "took_ms": round(statistics.median(walls), 2)})
    return rows


def stage_table(per_stage, bwrap_ms):
    lines = ["| stage | at ms | took ms |", "|---|---|---|"]
    for row in per_stage:
        lines.append(f"| {row['stage']} | {'-' if row['at_ms'] is None else row['at_ms']} | {row['took_ms']} |")
    own = next((r["at_ms"] for r in per_stage if r["stage"] == EXECVE), None)
    if own is not None and bwrap_ms:
        lines.append(f"\nrootsand's own setup, from its first line of Python to the command's execve: {own:.1f} ms, "
                     f"{own / bwrap_ms:.2f} x bwrap's whole run ({bwrap_ms:.1f} ms)")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description="rootsand's start-up and memory against bwrap, unshare and podman.")
    p.add_argument("--quick", action="store_true", help="3 timed rounds instead of 15 (a smoke run)")
    p.add_argument("--json", default=os.path.join(RESULTS, "run.json"), help="where to write all results")
    p.add_argument("--proxy", action="store_true", help="also run proxy.py (--net proxy against slirp)")
    p.add_argument("--all", action="store_true", help="also proxy.py, fakeroot.py, network.py and build_overhead.sh "
                   "(the other issues' benchmarks; minutes)")
    add_user_options(p)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run.py: run as root (the benchmarks drop to --user themselves)")
    common = ["--user", args.user, "--rootsand", args.rootsand]
    runs = "3" if args.quick else "15"
    memory_json = os.path.join(RESULTS, "memory.json")
    count = "16" if args.quick else "100"
    proxy_json = os.path.join(RESULTS, "proxy.json")
    relay_json = os.path.join(RESULTS, "relay.json")
    scripts = (("startup.py", ["--runs", runs]), ("memory.py", ["--json", memory_json]),
               ("throughput.py", ["--count", count]),
               ("relay.py", ["--json", relay_json] + (["--runs", "3", "--size", "200000"] if args.quick else [])))
    if args.proxy or args.all:
        scripts += (("proxy.py", ["--json", proxy_json] + (["--quick"] if args.quick else [])),)
    if args.all:
        scripts += (("fakeroot.py", ["--quick"] if args.quick else []),
                    ("network.py", ["--runs", "1", "--time", "2", "--startup-runs", "3"] if args.quick else []))
    for script, extra in scripts:
        print(f"## {script}\n", flush=True)
        subprocess.run([sys.executable, os.path.join(HERE, script), *extra, *common], check=True)
        print(flush=True)
    if args.all:
        print("## build_overhead.sh\n", flush=True)
        build = subprocess.run(["bash", os.path.join(HERE, "build_overhead.sh"), "2" if args.quick else "5"],
                               check=True, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "ROOTSAND_TEST_USER": args.user, "ROOTSAND": args.rootsand})
        print(build.stdout, flush=True)
    with open(os.path.join(RESULTS, "startup.json")) as f:
        startup = json.load(f)
    with open(memory_json) as f:
        memory = json.load(f)
    with open(os.path.join(RESULTS, "throughput.json")) as f:
        throughput = json.load(f)
    bwrap_ms = next((r["median_ms"] for r in startup["results"] if r["name"] == "bwrap" and not r["skipped"]), None)
    per_stage = {}
    for label, extra in (("default", ()), ("slirp", ("--net", "slirp"))):
        print(f"## stages of `rootsand run -v {' '.join(extra) + ' ' if extra else ''}-- true` "
              "(medians; ms since rootsand's first line of Python)\n")
        per_stage[label] = stages(args.user, args.rootsand, int(runs), extra)
        print(stage_table(per_stage[label], bwrap_ms) + "\n", flush=True)
    with open(relay_json) as f:
        relay = json.load(f)
    results = {"quick": args.quick, "startup": startup, "memory": memory, "throughput": throughput,
               "relay": relay, "stages": per_stage}
    if args.proxy or args.all:
        with open(proxy_json) as f:
            results["proxy"] = json.load(f)
    if args.all:
        for name in ("fakeroot", "network"):
            with open(os.path.join(RESULTS, f"{name}.json")) as f:
                results[name] = json.load(f)
        results["build_overhead"] = build.stdout
    save(args.json, results)


if __name__ == "__main__":
    main()
