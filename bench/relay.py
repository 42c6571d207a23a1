#!/usr/bin/env python3
"""Terminal relay benchmark: `cat` of a 2 MB file on a terminal, on the host, in bwrap and in rootsand.

Run as root:   python3 bench/relay.py [--runs N] [--size BYTES] [--user NAME] [--rootsand PATH]

rootsand gives a command on a terminal a pty of its own and relays (and filters) what it writes to the
user's terminal; bwrap (with --new-session) hands the command the user's terminal itself. Each command
runs on two terminals: under script(1) (`script -qec CMD /dev/null`, its output to /dev/null), and in a
window of a detached tmux server of fixed size (200x50), timed from `tmux new-window` until the command
signals `tmux wait-for`. The same command on the host is the baseline: the ratios say what the sandbox
costs on top of the terminal's own speed, start-up included (`rootsand run -- true` on the same
terminal shows how much of it is start-up). Interleaved rounds, medians.

As root it copies itself to a temp dir and re-executes itself as the unprivileged user (runuser), which
writes the file into a directory of its own under /var/tmp (rootsand binds the current directory), checks
once that every command shows the whole file, times, and prints JSON; the outer process prints the
tables and writes bench/results/relay.json. Stdlib only. See bench/README.md.
"""
import argparse
import json
import os
import platform
import pwd
import shlex
import shutil
import subprocess
import sys
import tempfile

from common import add_inner_options, add_user_options, failure, run_as_user, run_once, save, timed_rounds, version

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "relay.json")
WARMUPS = 2
TIMEOUT = 120  # seconds, per command run
HOST = "host: cat FILE"
ROOTSAND = "rootsand run -- cat FILE"
STARTUP = "rootsand run -- true (start-up alone)"
TARGETS = {"script": 1.3, "tmux": 1.5}  # what issue 21 asks of rootsand against the host


def commands(rootsand):
    """(name, shell command) pairs, run in the directory that holds FILE."""
    return [
        (HOST, "cat FILE"),
        ("bwrap --new-session: cat FILE", "bwrap --unshare-user --unshare-pid --unshare-net --unshare-uts "
         "--unshare-ipc --unshare-cgroup --new-session --die-with-parent --ro-bind / / --proc /proc --dev /dev "
         "-- cat FILE"),
        (ROOTSAND, f"{shlex.quote(rootsand)} run -- cat FILE"),
        (STARTUP, f"{shlex.quote(rootsand)} run -- true"),
    ]


def text(size):
    """`seq 1 N` output cut to `size` bytes at a line's end: what a build log or `git log` looks like to
    the relay (text, no escape sequences)."""
    lines, total, n = [], 0, 0
    while total < size:
        n += 1
        lines.append(b"%d\n" % n)
        total += len(lines[-1])
    return b"".join(lines)[:size].rpartition(b"\n")[0] + b"\n"


def on_script(command):
    return ["script", "-qec", command, "/dev/null"]


class Tmux:
    """A detached tmux server of its own (no user configuration), 200x50; each run is a new window that
    signals a channel when its command has ended, with the command's exit status in a file."""

    def __init__(self, workdir):
        self.socket = os.path.join(workdir, "tmux.sock")
        self.status = os.path.join(workdir, "status")
        self.workdir = workdir
        subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "200", "-y", "50",
                        "-s", "bench", "-c", workdir, "sleep 100000"], check=True, stdin=subprocess.DEVNULL)
        subprocess.run(["tmux", "-S", self.socket, "set-option", "-g", "remain-on-exit", "off"], check=True)

    def argv(self, command):
        sock, status = shlex.quote(self.socket), shlex.quote(self.status)
        window = f"{command}; echo $? > {status}; tmux -S {sock} wait-for -S relay-done"
        return ["sh", "-c", f"rm -f {status}; tmux -S {sock} new-window -d -c {shlex.quote(self.workdir)} "
                f"{shlex.quote(window)} && tmux -S {sock} wait-for relay-done && test \"$(cat {status})\" = 0"]

    def stop(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], stderr=subprocess.DEVNULL)


def check_once(r, expected):
    """The first run of a line: it must succeed and (`expected` not None) show the whole file."""
    if shutil.which(shlex.split(r["command"])[0]) is None:
        r["skipped"] = f"{shlex.split(r['command'])[0]} not found"
    else:
        elapsed, res = run_once(r["argv"], TIMEOUT, keep_stdout=True)
        r["first_attempt_ms"] = round(elapsed * 1e3, 3)
        r["skipped"] = failure(res)
        if r["skipped"] is None and expected is not None and expected not in res.stdout:
            r["skipped"] = f"the output is not the whole file ({len(res.stdout)} bytes shown)"
    print(f"  {r['terminal']}: {r['name']}: " + (f"skipped ({r['skipped']})" if r["skipped"] else
                                                 f"first attempt {r['first_attempt_ms']:.1f} ms"), file=sys.stderr)


def inner(args):
    """As the unprivileged user: time every command on every terminal, print JSON on stdout."""
    workdir = tempfile.mkdtemp(prefix="rootsand-relay-", dir="/var/tmp")
    tmux = None
    try:
        data = text(args.size)
        with open(os.path.join(workdir, "FILE"), "wb") as f:
            f.write(data)
        os.chdir(workdir)
        expected = data.replace(b"\n", b"\r\n")
        results = []
        terminals = [("script", on_script)]
        if shutil.which("tmux"):
            tmux = Tmux(workdir)
            terminals.append(("tmux", tmux.argv))
        for terminal, wrap in terminals:
            for name, command in commands(args.rootsand):
                r = {"terminal": terminal, "name": name, "command": command, "argv": wrap(command), "skipped": None}
                # On script the output is ours to check (each LF as CR LF); tmux's window shows it.
                check_once(r, expected if terminal == "script" and "cat" in command else None)
                results.append(r)
        timed_rounds([r for r in results if not r["skipped"]], args.runs, WARMUPS, TIMEOUT)
        print(f"  {WARMUPS} warm-up + {args.runs} timed rounds done", file=sys.stderr)
    finally:
        if tmux:
            tmux.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    meta = {
        "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "bytes": len(data),
        "runs": args.runs, "warmups": WARMUPS, "order": "interleaved rounds",
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "versions": {"rootsand": version([args.rootsand, "--version"]), "bwrap": version(["bwrap", "--version"]),
                     "script": version(["script", "--version"]), "tmux": version(["tmux", "-V"])},
    }
    json.dump({"meta": meta, "results": results}, sys.stdout, indent=2)


def tables(data):
    """One markdown table per terminal; fills in ratio_to_host, and per terminal the relay's own time."""
    out, notes = [], []
    for terminal in dict.fromkeys(r["terminal"] for r in data["results"]):
        res = [r for r in data["results"] if r["terminal"] == terminal]
        timed = {r["name"]: r["median_ms"] for r in res if not r["skipped"]}
        base = timed.get(HOST)
        rows = [("command", "median ms", "p10 ms", "p90 ms", "x host")]
        for r in res:
            if r["skipped"]:
                rows.append((r["name"], "skipped", "-", "-", "-"))
                notes.append(f"{terminal}: {r['name']}: skipped: {r['skipped']}")
                continue
            r["ratio_to_host"] = round(r["median_ms"] / base, 2) if base else None
            rows.append((r["name"], f"{r['median_ms']:.1f}", f"{r['p10_ms']:.1f}", f"{r['p90_ms']:.1f}",
                         f"{r['ratio_to_host']:.2f}" if base else "n/a"))
        lines = [f"{data['meta']['bytes']} bytes on {terminal}:", ""]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.insert(3, "|---" * len(rows[0]) + "|")
        ratio = timed.get(ROOTSAND, 0) / base if base else None
        if ratio:
            verdict = "met" if ratio <= TARGETS[terminal] else "missed"
            lines.append(f"\nrootsand {ratio:.2f} x the host (asked: <= {TARGETS[terminal]} x): {verdict}")
        out.append("\n".join(lines))
    return "\n\n".join(out + (["\n".join(notes)] if notes else []))


def outer(args):
    print(f"relay.py: {args.runs} runs (+{WARMUPS} warm-ups) of each command as {args.user}", file=sys.stderr)
    data = run_as_user(os.path.abspath(__file__), args, lambda workdir, user: (None, "no podman line"),
                       ["--runs", str(args.runs), "--size", str(args.size)])
    print(tables(data))  # also fills in ratio_to_host
    save(args.json, data)


def main():
    p = argparse.ArgumentParser(description="cat of 2 MB on a terminal: rootsand's relay against the host and bwrap.")
    p.add_argument("--runs", type=int, default=10, help="timed runs per command and terminal (default 10)")
    p.add_argument("--size", type=int, default=2 * 1000 * 1000, help="bytes of text to cat (default 2 MB)")
    p.add_argument("--json", default=RESULTS, help=f"where to write the results (default {RESULTS})")
    add_user_options(p)
    add_inner_options(p)
    args = p.parse_args()
    if args.runs < 1 or args.size < 2:
        p.error("--runs must be at least 1 and --size at least 2")
    inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    main()
