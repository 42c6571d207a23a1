#!/usr/bin/env python3
"""Network benchmark: iperf3 throughput through `rootsand run --net slirp` and `--net pasta` and rootless
podman's slirp4netns and pasta, against the host's own loopback, and the start-up cost of `--net slirp` and
`--net pasta` over `--net none`.

Run as root:   python3 bench/network.py [--runs N] [--time S] [--startup-runs N] [--no-reverse]
                                        [--user NAME] [--rootsand PATH]

As root it installs iperf3 with apt-get if it is missing and builds a rootfs for podman holding only the
iperf3 binary and the libraries `ldd` lists, owned by the user. Then it re-executes itself as the
unprivileged user (runuser -u USER -- /usr/bin/python3 network.py --inner ...). The inner process runs an
iperf3 server on 127.0.0.1 and the clients, and prints JSON; the outer process prints the tables and
writes bench/results/network.json. All traffic stays on the host's loopback: the sandboxes reach the
host's 127.0.0.1 as 10.0.2.2 (slirp4netns with host loopback allowed; pasta given slirp's addresses,
its gateway mapped to the host's loopback). Stdlib only. See bench/README.md.
"""
import argparse
import json
import os
import platform
import pwd
import shutil
import socket
import subprocess
import sys
import time

from common import (PATH, add_inner_options, add_user_options, chown_tree, failure, run_as_user, run_once, save,
                    summary, timed_rounds, version)

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "network.json")
WARMUPS = 3           # start-up rounds not counted
PROBE_SECONDS = 1     # length of the first, untimed iperf3 attempt of each client
HOST_LOOPBACK = "127.0.0.1"   # where the iperf3 server listens
SLIRP_HOST = "10.0.2.2"       # the host's 127.0.0.1 as seen from a slirp4netns sandbox
MTU = 65520
PODMAN_NETWORK = f"slirp4netns:allow_host_loopback=true,mtu={MTU}"
# pasta with slirp's addresses, so 10.0.2.2 is the host's loopback here too (podman 4.4 or later, which
# passes pasta --no-map-gw unless given --map-gw)
PODMAN_PASTA = "pasta:-a,10.0.2.100,-n,24,-g,10.0.2.2,--map-gw"


def iperf3_run(argv, timeout):
    """One iperf3 client run: elapsed seconds, the result, and why it failed (None when it did not)."""
    elapsed, res = run_once(argv, timeout, keep_stdout=True)
    detail = None
    if not isinstance(res, Exception) and res.returncode != 0:
        try:  # iperf3 -J puts its error into the JSON on stdout, not on stderr
            detail = json.loads(res.stdout).get("error")
        except (ValueError, AttributeError):
            pass
    return elapsed, res, failure(res, f"iperf3: {detail}" if detail else None)


# ---------------------------------------------------------------------------------------------------------
# Inner process (the unprivileged user)

class Iperf3Server:
    """A long-lived `iperf3 -s -B 127.0.0.1` on a free port, restarted after a failed test."""

    def __init__(self):
        self.proc = None
        self.port = None
        self.restarts = 0

    def start(self):
        with socket.socket() as s:   # a free port on the loopback (freed again just before iperf3 takes it)
            s.bind((HOST_LOOPBACK, 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(["iperf3", "-s", "-B", HOST_LOOPBACK, "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self._listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"iperf3 server exited {self.proc.returncode}: "
                                   + self.proc.stderr.read().decode(errors="replace").strip())
            if time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not listen within 10s")
            time.sleep(0.02)

    def _listening(self):
        """Is 127.0.0.1:PORT in state LISTEN? Read from /proc/net/tcp so no probe connection is made."""
        want = f"0100007F:{self.port:04X}"
        with open("/proc/net/tcp") as f:
            return any(line.split()[1] == want and line.split()[3] == "0A" for line in list(f)[1:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        self.stop()
        self.restarts += 1
        self.start()


def clients(rootsand, rootfs):
    """(name, function of (port, seconds, reverse) -> argv) for each iperf3 client."""
    def iperf(server, port, seconds, reverse):
        return ["-c", server, "-p", str(port), "-t", str(seconds), "-J"] + (["-R"] if reverse else [])
    return [
        ("host (no sandbox)",
         lambda p, t, r: ["iperf3"] + iperf(HOST_LOOPBACK, p, t, r)),
        ("rootsand --net slirp",
         lambda p, t, r: [rootsand, "run", "--net", "slirp", "--allow-host-loopback", "--",
                          "iperf3"] + iperf(SLIRP_HOST, p, t, r)),
        ("rootsand --net pasta",
         lambda p, t, r: [rootsand, "run", "--net", "pasta", "--allow-host-loopback", "--",
                          "iperf3"] + iperf(SLIRP_HOST, p, t, r)),
        ("podman slirp4netns (runc)",
         lambda p, t, r: ["podman", "run", "--rm", "--runtime", "runc", "--network", PODMAN_NETWORK,
                          "--rootfs", rootfs or "<no rootfs>", "/iperf3"] + iperf(SLIRP_HOST, p, t, r)),
        ("podman pasta (runc)",
         lambda p, t, r: ["podman", "run", "--rm", "--runtime", "runc", "--network", PODMAN_PASTA,
                          "--rootfs", rootfs or "<no rootfs>", "/iperf3"] + iperf(SLIRP_HOST, p, t, r)),
    ]


def parse_iperf3(stdout):
    """Sender and receiver Gbit/s, and retransmits, from iperf3 -J output."""
    end = json.loads(stdout)["end"]
    return {"sender_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
            "receiver_gbps": end["sum_received"]["bits_per_second"] / 1e9,
            "retransmits": end["sum_sent"].get("retransmits")}


def throughput(args):
    directions = [False] if args.no_reverse else [False, True]
    server = Iperf3Server()
    server.start()
    results = []
    try:
        for name, make in clients(args.rootsand, args.rootfs):
            entry = {"name": name, "argv": make("PORT", args.time, False), "skipped": None}
            if name.startswith("podman") and not args.rootfs:
                entry["skipped"] = args.podman_skip or "no rootfs"
            elif shutil.which(entry["argv"][0]) is None:
                entry["skipped"] = f"{entry['argv'][0]} not found"
            else:
                # One short untimed attempt: finds a client that can't work and pays one-off set-up
                # (podman's pause process) outside the measured runs.
                _, res, why = iperf3_run(make(server.port, PROBE_SECONDS, False), PROBE_SECONDS + 120)
                if why:
                    entry["skipped"] = f"first attempt: {why}"
                    server.restart()
            for reverse in directions:
                results.append(dict(entry, reverse=reverse, runs=[], make=make))
            print(f"  {name}: " + (f"skipped ({entry['skipped']})" if entry["skipped"] else "ok"), file=sys.stderr)

        # Interleaved rounds, so drift in machine load hits every client alike.
        for i in range(args.runs):
            for r in results:
                if r["skipped"]:
                    continue
                argv = r["make"](server.port, args.time, r["reverse"])
                elapsed, res, why = iperf3_run(argv, args.time + 120)
                if not why:
                    try:
                        r["runs"].append(dict(parse_iperf3(res.stdout), wall_s=round(elapsed, 3)))
                    except (ValueError, KeyError, TypeError) as e:
                        why = f"unreadable iperf3 JSON: {type(e).__name__}: {e}"
                if why:
                    r["skipped"] = f"failed on run {i + 1}: {why}"
                    server.restart()   # a test that broke off may leave the server busy
            print(f"  throughput round {i + 1}/{args.runs} done", file=sys.stderr)
    finally:
        server.stop()

    for r in results:
        del r["make"]
        r["direction"] = "server -> client (-R)" if r["reverse"] else "client -> server"
        if r["runs"] and not r["skipped"]:
            r["sender_gbps"] = summary([x["sender_gbps"] for x in r["runs"]])
            r["receiver_gbps"] = summary([x["receiver_gbps"] for x in r["runs"]])
            for x in r["runs"]:
                x["sender_gbps"] = round(x["sender_gbps"], 3)
                x["receiver_gbps"] = round(x["receiver_gbps"], 3)
    return results, server.restarts


def startup(args):
    cmds = [("rootsand run --net none -- true", [args.rootsand, "run", "--net", "none", "--", "true"]),
            ("rootsand run --net slirp -- true", [args.rootsand, "run", "--net", "slirp", "--", "true"]),
            ("rootsand run --net pasta -- true", [args.rootsand, "run", "--net", "pasta", "--", "true"])]
    results = []
    for name, argv in cmds:
        r = {"name": name, "argv": argv, "skipped": None}
        elapsed, res = run_once(argv, 120)
        r["first_attempt_ms"] = round(elapsed * 1e3, 3)
        r["skipped"] = failure(res)
        results.append(r)
    timed_rounds(results, args.startup_runs, WARMUPS, 120)
    print(f"  start-up: {WARMUPS} warm-up + {args.startup_runs} timed rounds done", file=sys.stderr)
    return results


def inner(args):
    """As the unprivileged user: run everything, print JSON on stdout."""
    start = startup(args)
    tput, restarts = throughput(args)
    meta = {
        "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
        "throughput_runs": args.runs, "seconds_per_run": args.time, "probe_seconds": PROBE_SECONDS,
        "startup_runs": args.startup_runs, "startup_warmups": WARMUPS, "order": "interleaved rounds",
        "server": f"iperf3 -s -B {HOST_LOOPBACK} (as {pwd.getpwuid(os.getuid()).pw_name})",
        "server_restarts": restarts, "slirp_mtu": MTU, "podman_network": PODMAN_NETWORK,
        "podman_pasta": PODMAN_PASTA,
        "kernel": platform.release(), "cpus": os.cpu_count(),
        "versions": {
            "rootsand": version([args.rootsand, "--version"]),
            "iperf3": version(["iperf3", "--version"]),
            "slirp4netns": version(["slirp4netns", "--version"]),
            "passt": version(["dpkg-query", "-W", "-f", "${Version}", "passt"]),
            "podman": version(["podman", "--version"]),
            "runc": version(["runc", "--version"]),
        },
    }
    json.dump({"meta": meta, "throughput": tput, "startup": start}, sys.stdout, indent=2)


# ---------------------------------------------------------------------------------------------------------
# Outer process (root)

def ensure_iperf3():
    """None if iperf3 is (now) installed, else why not."""
    if shutil.which("iperf3", path=PATH):
        return None
    print("network.py: iperf3 not found, installing it with apt-get", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")   # debconf would ask whether to start a daemon
    r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "iperf3"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0 or not shutil.which("iperf3", path=PATH):
        return f"apt-get install iperf3 failed: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def make_rootfs(workdir, user):
    """A rootfs with /iperf3 and the libraries it links, owned by USER (rootless podman writes /etc/hosts
    etc. into it). (path, None) or (None, why)."""
    iperf3 = os.path.realpath(shutil.which("iperf3", path=PATH))
    out = subprocess.run(["ldd", iperf3], capture_output=True, text=True)
    if out.returncode != 0:
        return None, f"ldd {iperf3} failed: {out.stderr.strip()}"
    libs = []
    for line in out.stdout.splitlines():
        if "not found" in line:
            return None, f"ldd {iperf3}: {line.strip()}"
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)",
        # "linux-vdso.so.1 (0x...)" (in the kernel: nothing to copy)
        libs += [tok for tok in line.split() if tok.startswith("/")]
    if not any("ld-linux" in lib or "/ld-" in lib for lib in libs):
        return None, f"ldd {iperf3} lists no dynamic loader"
    rootfs = os.path.join(workdir, "rootfs")
    for d in ("dev", "proc", "sys", "etc", "tmp", "run"):
        os.makedirs(os.path.join(rootfs, d))
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)   # iperf3 makes its buffer file in /tmp
    shutil.copy2(iperf3, os.path.join(rootfs, "iperf3"))
    for lib in libs:   # at the path ldd gave, so the loader (and the binary's PT_INTERP) find them
        dst = os.path.join(rootfs, lib.lstrip("/"))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(lib, dst)   # follows symlinks: the real file under the link's name
    chown_tree(rootfs, user)
    return rootfs, None


def fmt_table(rows, align):
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{c:<{w[i]}}" if align[i] == "<" else f"{c:>{w[i]}}" for i, c in enumerate(row)).rstrip()
             for row in rows]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


def tables(data):
    """The results as text tables; fills in the ratios to the host."""
    meta, out, notes = data["meta"], [], []
    host = {r["reverse"]: r for r in data["throughput"] if r["name"].startswith("host") and not r["skipped"]}
    rows = [("client", "direction", "sender Gbit/s", "receiver Gbit/s", "x host", "receiver runs")]
    for r in data["throughput"]:
        if r["skipped"]:
            rows.append((r["name"], r["direction"], "skipped", "-", "-", "-"))
            note = (f"{r['name']} ({r['direction']}): skipped: {r['skipped']}"
                    if r["skipped"].startswith("failed on run") else f"{r['name']}: skipped: {r['skipped']}")
            if note not in notes:   # a client skipped before the runs is skipped in both directions
                notes.append(note)
            continue
        base = host.get(r["reverse"])
        if base:
            r["ratio_to_host"] = {k: round(r[k]["median"] / base[k]["median"], 3)
                                  for k in ("sender_gbps", "receiver_gbps")}
        rows.append((r["name"], r["direction"], f"{r['sender_gbps']['median']:.2f}",
                     f"{r['receiver_gbps']['median']:.2f}",
                     f"{r['ratio_to_host']['receiver_gbps']:.2f}" if base else "n/a",
                     " ".join(f"{x['receiver_gbps']:.2f}" for x in r["runs"])))
    out.append(f"iperf3 TCP throughput to {HOST_LOOPBACK} (from a sandbox: {SLIRP_HOST}), "
               f"-t {meta['seconds_per_run']}, median of {meta['throughput_runs']}:")
    out += fmt_table(rows, "<<>>><")

    rows = [("command", "median ms", "p90 ms", "+ ms over --net none")]
    none = next((r for r in data["startup"] if "--net none" in r["name"] and not r["skipped"]), None)
    for r in data["startup"]:
        if r["skipped"]:
            rows.append((r["name"], "skipped", "-", "-"))
            notes.append(f"{r['name']}: skipped: {r['skipped']}")
            continue
        if none:
            r["over_net_none_ms"] = round(r["median_ms"] - none["median_ms"], 3)
        rows.append((r["name"], f"{r['median_ms']:.1f}", f"{r['p90_ms']:.1f}",
                     f"{r['over_net_none_ms']:+.1f}" if none else "n/a"))
    out.append("")
    out.append(f"start-up, median of {meta['startup_runs']} (+{meta['startup_warmups']} warm-ups):")
    out += fmt_table(rows, "<>>>")
    if meta.get("server_restarts"):
        notes.append(f"the iperf3 server was restarted {meta['server_restarts']} time(s) after failed tests")
    return "\n".join(out + ([""] + notes if notes else []))


def outer(args):
    why = ensure_iperf3()
    if why:
        sys.exit(f"network.py: {why}")
    n = 1 if args.no_reverse else 2
    print(f"network.py: as {args.user}: {args.startup_runs} start-up runs (+{WARMUPS} warm-ups) of 3 "
          f"commands, then {args.runs} x {n} iperf3 runs of {args.time}s for each of 5 clients "
          f"(about {args.runs * n * 5 * (args.time + 1) + 5 * (PROBE_SECONDS + 2)}s)", file=sys.stderr)
    inner_args = ["--runs", str(args.runs), "--time", str(args.time), "--startup-runs", str(args.startup_runs)]
    data = run_as_user(os.path.abspath(__file__), args, make_rootfs,
                       inner_args + (["--no-reverse"] if args.no_reverse else []))
    print(tables(data))  # also fills in ratio_to_host and over_net_none_ms
    save(RESULTS, data)


def main():
    p = argparse.ArgumentParser(description="iperf3 throughput through rootsand's and podman's slirp4netns and "
                                            "pasta vs the host, and the start-up cost of --net slirp and pasta.")
    p.add_argument("--runs", type=int, default=3, help="iperf3 runs per client and direction (default 3)")
    p.add_argument("--time", type=int, default=5, help="seconds per iperf3 run (default 5)")
    p.add_argument("--startup-runs", type=int, default=20, help="timed start-up runs per command (default 20)")
    p.add_argument("--no-reverse", action="store_true", help="skip the server -> client (iperf3 -R) direction")
    add_user_options(p)
    add_inner_options(p)
    args = p.parse_args()
    if args.runs < 1 or args.time < 1 or args.startup_runs < 1:
        p.error("--runs, --time and --startup-runs must be at least 1")
    inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    main()
