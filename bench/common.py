"""What the benchmark scripts share: timing one run, naming a failure, tool versions, and running the
measuring half of a script as the unprivileged user (runuser's own cost left out). Stdlib only."""

import argparse
import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_ROOTSAND = "/var/tmp/rootsand-tests/venv/bin/rootsand"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def add_user_options(parser):
    """--user and --rootsand, which every benchmark takes."""
    parser.add_argument("--user", default="rootsand-test", help="unprivileged user to run as (default rootsand-test)")
    parser.add_argument("--rootsand", default=DEFAULT_ROOTSAND,
                        help=f"rootsand executable (default {DEFAULT_ROOTSAND})")


def add_inner_options(parser):
    """The hidden options run_as_user passes to the half of a script that runs as the user."""
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rootfs", help=argparse.SUPPRESS)
    parser.add_argument("--podman-skip", help=argparse.SUPPRESS)


def run_once(argv, timeout, keep_stdout=False):
    """Elapsed seconds and the CompletedProcess (or the exception) of one run; stderr captured."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
                              stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return time.perf_counter() - t0, e
    return time.perf_counter() - t0, proc


def failure(result, detail=None):
    """None if the run succeeded, else a one-line reason (`detail` may say it better than stderr)."""
    if isinstance(result, Exception):
        return f"{type(result).__name__}: {result}"
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        return f"exit {result.returncode}: " + (detail or (err[-1] if err else "(no stderr)"))
    return None


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def summary(values):
    v = sorted(values)
    return {"median": round(statistics.median(v), 3), "min": round(v[0], 3), "max": round(v[-1], 3)}


def timed_rounds(results, rounds, warmups, timeout):
    """Run every result's argv once per round, interleaved so drift in machine load hits all alike; the
    first `warmups` rounds are not counted. Fills in runs, median_ms, p10_ms, p90_ms, min_ms and max_ms, or
    `skipped` for one that fails."""
    times = {id(r): [] for r in results}
    for i in range(warmups + rounds):
        for r in results:
            if r["skipped"]:
                continue
            elapsed, res = run_once(r["argv"], timeout)
            why = failure(res)
            if why:
                r["skipped"] = f"failed on run {i + 1}: {why}"
            elif i >= warmups:
                times[id(r)].append(elapsed * 1e3)
    for r in results:
        if r["skipped"]:
            continue
        t = sorted(times[id(r)])
        deciles = statistics.quantiles(t, n=10, method="inclusive") if len(t) > 1 else [t[0]] * 9
        r.update(runs=len(t), median_ms=round(statistics.median(t), 3), p10_ms=round(deciles[0], 3),
                 p90_ms=round(deciles[8], 3),
                 min_ms=round(t[0], 3), max_ms=round(t[-1], 3))


def chown_tree(path, user):
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(path):
        for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
            os.lchown(n, pw.pw_uid, pw.pw_gid)


def run_as_user(script, args, make_rootfs, inner_args):
    """As root: check the set-up, copy `script` and this module where the user can read them, build a
    rootfs for podman with make_rootfs(workdir, user), run `script --inner ...` as the user, return its JSON."""
    name = os.path.basename(script)
    if os.geteuid() != 0:
        sys.exit(f"{name}: run as root (it re-executes itself as --user via runuser)")
    try:
        pw = pwd.getpwnam(args.user)
    except KeyError:
        sys.exit(f"{name}: no user {args.user!r} (bash tests/run.sh creates rootsand-test)")
    if not os.access(args.rootsand, os.X_OK):
        sys.exit(f"{name}: {args.rootsand} is not executable (bash tests/run.sh builds it)")
    workdir = tempfile.mkdtemp(prefix="rootsand-bench-", dir="/var/tmp")
    try:
        os.chmod(workdir, 0o755)
        for source in (script, os.path.abspath(__file__)):  # copies the user can surely read
            copy = os.path.join(workdir, os.path.basename(source))
            shutil.copy2(source, copy)
            os.chmod(copy, 0o644)
        rootfs, why = make_rootfs(workdir, args.user)
        argv = ["runuser", "-u", args.user, "--", "env", "-i", f"PATH={PATH}", f"HOME={pw.pw_dir}",
                f"USER={args.user}", f"LOGNAME={args.user}", "LANG=C.UTF-8",
                "/usr/bin/python3", os.path.join(workdir, name), "--inner", "--rootsand", args.rootsand,
                *inner_args]
        argv += ["--rootfs", rootfs] if rootfs else ["--podman-skip", why]
        out = subprocess.run(argv, cwd="/", stdout=subprocess.PIPE, check=True).stdout
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return json.loads(out)


def save(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    print(f"\nwrote {os.path.relpath(path)}")
