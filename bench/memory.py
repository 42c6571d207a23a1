#!/usr/bin/env python3
"""Memory of the supervisor: RSS and PSS of every process a sandbox tool keeps while the command runs.

Run as root:   python3 bench/memory.py [--user NAME] [--rootsand PATH] [--json FILE]

Each tool runs `sh -c 'echo ready; exec sleep 600'` as the unprivileged user (through runuser). Once
"ready" arrives on the pipe, the command is running; this script (root, so it may read every process's
smaps_rollup, including those owned by the sandbox's subordinate ids) sums Rss and Pss over all
descendants of runuser except the command itself (sleep) and runuser. Then it kills the tree.
Stdlib only. See bench/README.md.
"""
import argparse
import os
import pwd
import signal
import subprocess
import sys

from common import PATH, add_user_options, save

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "memory.json")
COMMAND = ["sh", "-c", "echo ready; exec sleep 600"]


def tools(rootsand):
    return [
        ("rootsand run", [rootsand, "run", "--"]),
        ("rootsand run --net slirp", [rootsand, "run", "--net", "slirp", "--"]),
        ("bwrap", ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                   "--proc", "/proc", "--dev", "/dev", "--"]),
    ]


def children_of():
    """{ppid: [pid, ...]} for every process now."""
    tree = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(name))
    return tree


def descendants(pid):
    tree, out, todo = children_of(), [], [pid]
    while todo:
        kids = tree.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def memory_kib(pid):
    """(comm, rss KiB, pss KiB) from smaps_rollup."""
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key == "Rss":
                rss = int(rest.split()[0])
            elif key == "Pss":
                pss = int(rest.split()[0])
    return comm, rss, pss


def measure(name, argv, user):
    pw = pwd.getpwnam(user)
    env_argv = ["runuser", "-u", user, "--", "env", "-i", f"PATH={PATH}", f"HOME={pw.pw_dir}",
                f"USER={user}", "LANG=C.UTF-8", *argv, *COMMAND]
    proc = subprocess.Popen(env_argv, cwd="/tmp", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            proc.kill()
            err = proc.stderr.read().decode(errors="replace").strip().splitlines()
            return {"name": name, "skipped": err[-1] if err else f"no 'ready' (exit {proc.wait()})"}
        procs = []
        for pid in descendants(proc.pid):
            try:
                procs.append(memory_kib(pid))
            except OSError:
                continue
        kept = [p for p in procs if p[0] != "sleep"]
        return {"name": name, "skipped": None, "processes": [p[0] for p in kept],
                "rss_mib": round(sum(p[1] for p in kept) / 1024, 1),
                "pss_mib": round(sum(p[2] for p in kept) / 1024, 1)}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()


def table(results):
    rows = [("tool", "processes", "RSS MiB", "PSS MiB")]
    for r in results:
        if r["skipped"]:
            rows.append((r["name"], "skipped: " + r["skipped"], "-", "-"))
        else:
            rows.append((r["name"], f"{len(r['processes'])} ({', '.join(r['processes'])})",
                         f"{r['rss_mib']:.1f}", f"{r['pss_mib']:.1f}"))
    w = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [f"| {a:<{w[0]}} | {b:<{w[1]}} | {c:>{w[2]}} | {d:>{w[3]}} |" for a, b, c, d in rows]
    lines.insert(1, "|" + "|".join("-" * (n + 2) for n in w) + "|")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description="RSS/PSS of the processes a sandbox tool keeps while its command runs.")
    add_user_options(p)
    p.add_argument("--json", default=RESULTS, help=f"where to write the results (default {RESULTS})")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("memory.py: run as root (it reads the smaps of processes owned by the sandbox's ids)")
    results = [measure(name, tool_argv, args.user) for name, tool_argv in tools(args.rootsand)]
    print(table(results))
    save(args.json, {"command": COMMAND, "results": results})
    return results


if __name__ == "__main__":
    main()
