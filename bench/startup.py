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
import sys

from common import (add_inner_options, add_user_options, chown_tree, failure, run_as_user, run_once, save,
                    timed_rounds, version)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "startup.json")
WARMUPS = 3
TIMEOUT = 120  # seconds, per command run


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
        ("rootsand run --net slirp -- true", [rootsand, "run", "--net", "slirp", "--", "true"]),
        ("podman run --network slirp4netns --rootfs (runc)",
         ["podman", "run", "--rm", "--network", "slirp4netns", "--runtime", "runc", "--rootfs", rootfs or "<no rootfs>",
          "/bin/true"]),
    ]


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
            elapsed, res = run_once(argv, TIMEOUT)   # first attempt: may pay one-off set-up (podman's pause process)
            r["first_attempt_ms"] = round(elapsed * 1e3, 3)
            why = failure(res)
            if why:
                r["skipped"] = why
        results.append(r)
        print(f"  {name}: " + (f"skipped ({r['skipped']})" if r["skipped"] else
                                f"first attempt {r['first_attempt_ms']:.1f} ms"), file=sys.stderr)

    live = [r for r in results if not r["skipped"]]
    timed_rounds(live, args.runs, WARMUPS, TIMEOUT)
    print(f"  {WARMUPS} warm-up + {args.runs} timed rounds done", file=sys.stderr)

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
    chown_tree(rootfs, user)
    return rootfs, None


def table(data):
    """The results as a markdown table; fills in ratio_to_bwrap and ratio_to_podman (the podman run with the
    same kind of network)."""
    res = data["results"]
    timed = {r["name"]: r["median_ms"] for r in res if not r["skipped"]}
    base = timed.get("bwrap")
    rows, notes = [("command", "median ms", "p10 ms", "p90 ms", "x bwrap", "x podman")], []
    for r in res:
        if r["skipped"]:
            first = f" (first attempt took {r['first_attempt_ms']:.0f} ms)" if "first_attempt_ms" in r else ""
            rows.append((r["name"], "skipped", "-", "-", "-", "-"))
            notes.append(f"{r['name']}: skipped: {r['skipped']}{first}")
            continue
        podman = timed.get("podman run --network slirp4netns --rootfs (runc)" if "slirp" in r["name"]
                           else "podman run --rootfs (runc)")
        r["ratio_to_bwrap"] = round(r["median_ms"] / base, 2) if base else None
        r["ratio_to_podman"] = round(r["median_ms"] / podman, 2) if podman else None
        rows.append((r["name"], f"{r['median_ms']:.1f}", f"{r['p10_ms']:.1f}", f"{r['p90_ms']:.1f}",
                     f"{r['ratio_to_bwrap']:.2f}" if base else "n/a", f"{r['ratio_to_podman']:.2f}" if podman else "n/a"))
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "|---" * len(rows[0]) + "|")
    return "\n".join(lines + [""] + notes)


def outer(args):
    print(f"startup.py: {args.runs} runs (+{WARMUPS} warm-ups) of each command as {args.user}", file=sys.stderr)
    data = run_as_user(os.path.abspath(__file__), args, make_rootfs, ["--runs", str(args.runs)])
    print(table(data))  # also fills in ratio_to_bwrap
    save(RESULTS, data)


def main():
    p = argparse.ArgumentParser(description="Startup time of rootsand run vs bwrap, unshare, rootless podman.")
    p.add_argument("--runs", type=int, default=30, help="timed runs per command (default 30)")
    add_user_options(p)
    add_inner_options(p)
    args = p.parse_args()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    main()
