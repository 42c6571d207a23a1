#!/usr/bin/env python3
"""Startup-time benchmark: `rootsand run -- true` against bwrap, unshare and rootless podman.

Run as root:   python3 bench/startup.py [--runs N] [--user NAME] [--rootsand PATH]

As root it prepares a busybox rootfs for podman, then re-executes itself as the unprivileged user
(runuser -u USER -- /usr/bin/python3 startup.py --inner ...) so that runuser's own cost is not measured.
The inner process times each command with time.perf_counter around subprocess.run, in interleaved
rounds, and prints JSON; the outer process prints the table and writes bench/results/startup.json.
Stdlib only. See bench/README.md.
"""
import argparse
import json
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "startup.json")
DEFAULT_ROOTSAND = "/var/tmp/rootsand-tests/venv/bin/rootsand"
WARMUPS = 3
TIMEOUT = 120  # seconds, per command run
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def commands(rootsand, rootfs):
    """(name, argv) pairs; every command runs `true` in comparable namespaces."""
    venv_python = os.path.join(os.path.dirname(rootsand), "python3")
    return [
        ("rootsand run -- true", [rootsand, "run", "--", "true"]),
        ("python3 -c pass (venv, floor)", [venv_python, "-c", "pass"]),
        ("bwrap", ["bwrap", "--unshare-user", "--unshare-pid", "--unshare-net", "--unshare-uts",
                   "--unshare-ipc", "--unshare-cgroup", "--uid", "0", "--gid", "0",
                   "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--", "true"]),
        ("unshare -r --fork --pid --mount-proc", ["unshare", "-r", "--fork", "--pid", "--mount-proc", "true"]),
        ("podman run --rootfs (runc)", ["podman", "run", "--rm", "--network", "none", "--runtime", "runc",
                                        "--rootfs", rootfs or "<no rootfs>", "/bin/true"]),
    ]


def run_once(argv):
    """Elapsed seconds and the CompletedProcess (or the exception) of one run."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        return time.perf_counter() - t0, e
    return time.perf_counter() - t0, proc


def failure(result):
    """None if the run succeeded, else a one-line reason."""
    if isinstance(result, Exception):
        return f"{type(result).__name__}: {result}"
    if result.returncode != 0:
        err = result.stderr.decode(errors="replace").strip().splitlines()
        return f"exit {result.returncode}: " + (err[-1] if err else "(no stderr)")
    return None


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return None


def inner(args):
    """As the unprivileged user: time every command, print JSON on stdout."""
    results = []
    for name, argv in commands(args.rootsand, args.rootfs):
        r = {"name": name, "argv": argv, "skipped": None}
        if argv[0] == "podman" and not args.rootfs:
            r["skipped"] = args.podman_skip or "no rootfs"
        elif shutil.which(argv[0]) is None:
            r["skipped"] = f"{argv[0]} not found"
        else:
            elapsed, res = run_once(argv)   # first attempt: may pay one-off set-up (podman's pause process)
            r["first_attempt_ms"] = round(elapsed * 1e3, 3)
            why = failure(res)
            if why:
                r["skipped"] = why
        results.append(r)
        print(f"  {name}: " + (f"skipped ({r['skipped']})" if r["skipped"] else
                                f"first attempt {r['first_attempt_ms']:.1f} ms"), file=sys.stderr)

    live = [r for r in results if not r["skipped"]]
    times = {r["name"]: [] for r in live}
    # Interleaved rounds, so drift in machine load hits every command alike.
    for i in range(WARMUPS + args.runs):
        for r in live:
            if r["skipped"]:  # failed on an earlier round
                continue
            elapsed, res = run_once(r["argv"])
            why = failure(res)
            if why:
                r["skipped"] = f"failed on run {i + 1}: {why}"
            elif i >= WARMUPS:
                times[r["name"]].append(elapsed * 1e3)
    print(f"  {WARMUPS} warm-up + {args.runs} timed rounds done", file=sys.stderr)

    for r in live:
        if r["skipped"]:
            continue
        t = sorted(times[r["name"]])
        p90 = statistics.quantiles(t, n=10, method="inclusive")[8] if len(t) > 1 else t[0]
        r.update(runs=len(t), median_ms=round(statistics.median(t), 3), p90_ms=round(p90, 3),
                 min_ms=round(t[0], 3), max_ms=round(t[-1], 3))

    meta = {
        "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
        "runs": args.runs, "warmups": WARMUPS, "order": "interleaved rounds",
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "versions": {
            "rootsand": version([args.rootsand, "--version"]),
            "python3 (venv)": version([results[1]["argv"][0], "--version"]),
            "bwrap": version(["bwrap", "--version"]),
            "unshare": version(["unshare", "--version"]),
            "podman": version(["podman", "--version"]),
            "runc": version(["runc", "--version"]),
        },
    }
    json.dump({"meta": meta, "results": results}, sys.stdout, indent=2)


def make_rootfs(workdir, user):
    """A busybox rootfs owned by USER (rootless podman writes /etc/mtab etc. into it). (path, None) or (None, why)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        return None, "busybox not found (apt-get install busybox-static)"
    if b"ld-linux" in open(busybox, "rb").read(4096):
        return None, f"{busybox} is dynamically linked (install busybox-static)"
    rootfs = os.path.join(workdir, "rootfs")
    for d in ("bin", "dev", "proc", "sys", "etc", "tmp", "run"):
        os.makedirs(os.path.join(rootfs, d))
    shutil.copy2(busybox, os.path.join(rootfs, "bin", "busybox"))
    for applet in ("true", "sh"):
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))
    pw = pwd.getpwnam(user)
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for n in [dirpath] + [os.path.join(dirpath, f) for f in dirnames + filenames]:
            os.lchown(n, pw.pw_uid, pw.pw_gid)
    return rootfs, None


def table(data):
    """The results as a text table; fills in ratio_to_bwrap."""
    res = data["results"]
    base = next((r["median_ms"] for r in res if r["name"] == "bwrap" and not r["skipped"]), None)
    rows, notes = [("command", "median ms", "p90 ms", "x bwrap")], []
    for r in res:
        if r["skipped"]:
            first = f" (first attempt took {r['first_attempt_ms']:.0f} ms)" if "first_attempt_ms" in r else ""
            rows.append((r["name"], "skipped", "-", "-"))
            notes.append(f"{r['name']}: skipped: {r['skipped']}{first}")
            continue
        r["ratio_to_bwrap"] = round(r["median_ms"] / base, 2) if base else None
        rows.append((r["name"], f"{r['median_ms']:.1f}", f"{r['p90_ms']:.1f}",
                     f"{r['ratio_to_bwrap']:.2f}" if base else "n/a"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d:>{w[3]}}" for a, b, c, d in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines + notes)


def outer(args):
    if os.geteuid() != 0:
        sys.exit("startup.py: run as root (it re-executes itself as --user via runuser)")
    try:
        pw = pwd.getpwnam(args.user)
    except KeyError:
        sys.exit(f"startup.py: no user {args.user!r} (bash tests/run.sh creates rootsand-test)")
    if not os.access(args.rootsand, os.X_OK):
        sys.exit(f"startup.py: {args.rootsand} is not executable (bash tests/run.sh builds it)")

    workdir = tempfile.mkdtemp(prefix="rootsand-bench-", dir="/var/tmp")
    try:
        os.chmod(workdir, 0o755)
        script = os.path.join(workdir, "startup.py")  # a copy the user can surely read
        shutil.copy2(os.path.abspath(__file__), script)
        os.chmod(script, 0o644)
        rootfs, why = make_rootfs(workdir, args.user)
        argv = ["runuser", "-u", args.user, "--", "env", "-i", f"PATH={PATH}", f"HOME={pw.pw_dir}",
                f"USER={args.user}", f"LOGNAME={args.user}", "LANG=C.UTF-8",
                "/usr/bin/python3", script, "--inner", "--runs", str(args.runs), "--rootsand", args.rootsand]
        argv += ["--rootfs", rootfs] if rootfs else ["--podman-skip", why]
        print(f"startup.py: {args.runs} runs (+{WARMUPS} warm-ups) of each command as {args.user}",
              file=sys.stderr)
        out = subprocess.run(argv, cwd="/", stdout=subprocess.PIPE, check=True).stdout
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    data = json.loads(out)
    print(table(data))  # also fills in ratio_to_bwrap
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    print(f"\nwrote {os.path.relpath(RESULTS)}")


def main():
    p = argparse.ArgumentParser(description="Startup time of rootsand run vs bwrap, unshare, rootless podman.")
    p.add_argument("--runs", type=int, default=30, help="timed runs per command (default 30)")
    p.add_argument("--user", default="rootsand-test", help="unprivileged user to run as (default rootsand-test)")
    p.add_argument("--rootsand", default=DEFAULT_ROOTSAND, help=f"rootsand executable (default {DEFAULT_ROOTSAND})")
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rootfs", help=argparse.SUPPRESS)
    p.add_argument("--podman-skip", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    main()
