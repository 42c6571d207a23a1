#!/usr/bin/env python3
"""Proxy benchmark: download throughput and per-connection latency through `rootsand run --net proxy`
(plain HTTP forwarding and a CONNECT tunnel) against `--net slirp` and the host's own loopback.

Run as root:   python3 bench/proxy.py [--quick] [--rounds N] [--size-mib M] [--requests N] [--json FILE]
                                      [--user NAME] [--rootsand PATH]

It re-executes itself as the unprivileged user, as startup.py does. The inner process serves HTTP on the
host's 127.0.0.1 from a thread (zero bytes out of one preallocated 1 MiB buffer, with Content-Length) and
runs the clients: curl downloads of one large body, and a Python loop of small GETs each on a new
connection, timed inside one sandbox per mode. Sandboxes reach the server as host.rootsand.internal:PORT
(proxy mode, --allow-host) or as 10.0.2.2:PORT (slirp with --allow-host-loopback). Every mode gets one
untimed warm-up, then the modes run in interleaved rounds. The outer process prints markdown tables and
writes bench/results/proxy.json. All traffic stays on the host's loopback. Stdlib only. See bench/README.md.
"""
import argparse
import http.server
import json
import os
import platform
import pwd
import statistics
import sys
import threading
import time

from common import add_inner_options, add_user_options, failure, run_as_user, run_once, save, version

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "proxy.json")
HOST_LOOPBACK = "127.0.0.1"             # where the server listens
HOST_INTERNAL = "host.rootsand.internal"  # the host's loopback as the proxy names it
SLIRP_HOST = "10.0.2.2"                 # the host's loopback as seen from a slirp4netns sandbox
MIB = 1 << 20
SMALL = 1024                 # body of each latency request, bytes
WARMUP_MIB = 16              # the untimed first download of each client
WARMUP_REQUESTS = 20         # the untimed first latency run of each client
CURL_FORMAT = "%{http_code} %{size_download} %{speed_download} %{time_total}"

# Runs inside the sandbox (or on the host) as `python3 -c CLIENT URL COUNT HOW`: COUNT sequential GETs of
# URL, each on a new connection, after 5 untimed ones; prints each request's milliseconds as JSON.
# HOW: "direct" (no proxy), "env" (urllib's ProxyHandler reads HTTP_PROXY: plain forwarding), or
# "tunnel" (http.client through a CONNECT tunnel to the proxy that HTTP_PROXY names).
CLIENT = r"""
import http.client, json, os, sys, time, urllib.parse, urllib.request
url, count, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
target = urllib.parse.urlsplit(url)
if how == "tunnel":
    proxy = urllib.parse.urlsplit(os.environ["HTTP_PROXY"])
    def get():
        conn = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=10)
        conn.set_tunnel(target.hostname, target.port)
        conn.request("GET", target.path)
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, body
else:
    opener = urllib.request.build_opener(*([] if how == "env" else [urllib.request.ProxyHandler({})]))
    def get():
        with opener.open(url, timeout=10) as response:
            return response.status, response.read()
times = []
for i in range(5 + count):
    t0 = time.perf_counter()
    status, body = get()
    elapsed = time.perf_counter() - t0
    if status != 200 or len(body) != SIZE:
        sys.exit(f"request {i + 1}: status {status}, {len(body)} bytes (expected 200, SIZE)")
    if i >= 5:
        times.append(round(elapsed * 1e3, 4))
print(json.dumps(times))
""".replace("SIZE", str(SMALL))


# ---------------------------------------------------------------------------------------------------------
# Inner process (the unprivileged user)

class Handler(http.server.BaseHTTPRequestHandler):
    """GET /bytes/N: N zero bytes, one connection per request."""
    protocol_version = "HTTP/1.1"   # as real servers answer; every response still says Connection: close
    buffer = memoryview(bytes(MIB))

    def do_GET(self):
        try:
            left = int(self.path.removeprefix("/bytes/"))
        except ValueError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(left))
        self.send_header("Connection", "close")
        self.end_headers()
        while left:             # wfile is unbuffered: each write is one sendall of the shared buffer
            n = min(left, len(self.buffer))
            self.wfile.write(self.buffer[:n])
            left -= n

    def log_message(self, *args):
        pass


class Server:
    """A threaded HTTP server on 127.0.0.1 (a free port), run from a thread of this process."""

    def start(self):
        self.httpd = http.server.ThreadingHTTPServer((HOST_LOOPBACK, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


def sandbox(rootsand, mode, port):
    """The `rootsand run ... --` prefix for a mode, and the host:port the sandbox reaches the server at."""
    if mode == "host":
        return [], f"{HOST_LOOPBACK}:{port}"
    if mode == "slirp":
        return [rootsand, "run", "--net", "slirp", "--allow-host-loopback", "--"], f"{SLIRP_HOST}:{port}"
    return [rootsand, "run", "--net", "proxy", "--allow-host", f"{HOST_INTERNAL}:{port}", "--"], \
        f"{HOST_INTERNAL}:{port}"


# (name, mode, how the client goes): the same five lines in both tests. "captured": no proxy, so the
# client resolves the name through the proxy's DNS and connects to the fake address it got (the capture).
CLIENTS = [("host (no sandbox)", "host", "direct"),
           ("rootsand --net proxy (forwarding)", "proxy", "env"),
           ("rootsand --net proxy (CONNECT)", "proxy", "tunnel"),
           ("rootsand --net proxy (captured)", "proxy", "direct"),
           ("rootsand --net slirp", "slirp", "direct")]


def download_argv(rootsand, mode, how, port, size):
    prefix, where = sandbox(rootsand, mode, port)
    curl = ["curl", "-sS", "--max-time", str(download_timeout(size)), "-o", "/dev/null", "-w", CURL_FORMAT]
    curl += ["-p"] if how == "tunnel" else ["--noproxy", "*"] if how == "direct" else []
    return prefix + curl + [f"http://{where}/bytes/{size}"]


def latency_argv(rootsand, mode, how, port, count, client=CLIENT):
    prefix, where = sandbox(rootsand, mode, port)
    return prefix + ["python3", "-c", client, f"http://{where}/bytes/{SMALL}", str(count), how]


def download_timeout(size):
    return 60 + size // (5 * MIB)   # seconds: generous even at 5 MiB/s


def keep_stderr(entry, res):
    """Note what a successful run said on stderr (rootsand's proxy warns there), a few distinct lines."""
    if isinstance(res, Exception) or res.returncode != 0:
        return
    seen = entry.setdefault("stderr", [])
    for line in res.stderr.decode(errors="replace").splitlines():
        if line.strip() and line not in seen and len(seen) < 10:
            seen.append(line)


def download(entry, argv, size):
    """One curl run: ({mbps, time_total_s, wall_s}, None) or (None, why it failed)."""
    elapsed, res = run_once(argv, download_timeout(size) + 30, keep_stdout=True)
    keep_stderr(entry, res)
    why = failure(res)
    if why:
        return None, why
    try:
        code, got, speed, total = res.stdout.decode().split()
        got, speed, total = int(got), float(speed), float(total)
    except ValueError:
        return None, f"unreadable curl -w output {res.stdout[:200]!r}"
    if code != "200" or got != size:
        return None, f"HTTP {code}, {got} of {size} bytes"
    return {"mbps": round(speed / 1e6, 3), "time_total_s": round(total, 4), "wall_s": round(elapsed, 3)}, None


def latencies(entry, argv, count):
    """One client run: (list of ms, None) or (None, why it failed)."""
    _, res = run_once(argv, 60 + count, keep_stdout=True)
    keep_stderr(entry, res)
    why = failure(res)
    if why:
        return None, why
    try:
        times = json.loads(res.stdout)
        assert len(times) == count
    except (ValueError, AssertionError):
        return None, f"unreadable client output {res.stdout[-200:]!r}"
    return times, None


def spread(values):
    v = sorted(values)
    p10, p90 = (statistics.quantiles(v, n=10, method="inclusive")[i] for i in (0, 8)) if len(v) > 1 else (v[0], v[0])
    return {"median": round(statistics.median(v), 3), "p10": round(p10, 3), "p90": round(p90, 3),
            "min": round(v[0], 3), "max": round(v[-1], 3), "n": len(v)}


def interleaved(entries, rounds, run, warmup, timed, label):
    """One untimed run(entry, warmup) per entry (a failure skips it), then `rounds` rounds of
    run(entry, timed) for every entry in turn, so drift in machine load hits all alike. run returns
    (value, why it failed)."""
    for e in entries:
        _, why = run(e, warmup)
        e["skipped"] = f"warm-up: {why}" if why else None
        print(f"  {label} {e['name']}: " + (f"skipped ({e['skipped']})" if why else "ok"), file=sys.stderr)
    for i in range(rounds):
        for e in entries:
            if e["skipped"]:
                continue
            value, why = run(e, timed)
            if why:
                e["skipped"] = f"failed in round {i + 1}: {why}"
            else:
                e["runs"].append(value)
        print(f"  {label} round {i + 1}/{rounds} done", file=sys.stderr)


def become_subreaper():
    """Let orphans of our children reparent to this process (PR_SET_CHILD_SUBREAPER), so that whatever a
    run leaves behind is still found among our descendants."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def descendants():
    """"PID command line" of every process below this one."""
    children = {}
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        if p.isdigit():
            children.setdefault(int(stat[stat.rindex(")") + 2:].split()[1]), []).append(int(p))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                found.append(f"{pid} " + b" ".join(f.read().split(b"\0")).decode(errors="replace").strip()[:120])
        except OSError:
            pass
    return found


def reap_orphans():
    """How many exited orphans (reparented to us by become_subreaper) there were to reap."""
    count = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return count
        if pid == 0:
            return count
        count += 1


def inner(args):
    """As the unprivileged user: run both tests, print JSON on stdout."""
    become_subreaper()
    server = Server()
    server.start()
    port = server.port
    try:
        size = args.size_mib * MIB
        downloads = [{"name": n, "mode": m, "how": h, "skipped": None, "runs": [],
                      "argv": download_argv(args.rootsand, m, h, "PORT", size)} for n, m, h in CLIENTS]
        interleaved(downloads, args.rounds,
                    lambda e, n: download(e, download_argv(args.rootsand, e["mode"], e["how"], port, n), n),
                    WARMUP_MIB * MIB, size, "download")
        requests = [{"name": n, "mode": m, "how": h, "skipped": None, "runs": [],
                     "argv": latency_argv(args.rootsand, m, h, "PORT", args.requests, "CLIENT (see proxy.py)")}
                    for n, m, h in CLIENTS]
        interleaved(requests, args.rounds,
                    lambda e, n: latencies(e, latency_argv(args.rootsand, e["mode"], e["how"], port, n), n),
                    WARMUP_REQUESTS, args.requests, "latency")
    finally:
        server.stop()
    time.sleep(0.5)   # a sandbox's last processes may take a moment to go
    left = descendants()
    reaped = reap_orphans()

    for e in downloads:
        if e["runs"] and not e["skipped"]:
            e["mbps"] = spread([r["mbps"] for r in e["runs"]])
            e["wall_s"] = spread([r["wall_s"] for r in e["runs"]])
    for e in requests:
        if e["runs"] and not e["skipped"]:
            e["ms"] = spread([t for run in e["runs"] for t in run])
            e["round_medians_ms"] = [round(statistics.median(run), 3) for run in e["runs"]]
        e["runs"] = len(e["runs"])   # the single requests are summed up in ms; keep the JSON small
    meta = {
        "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(),
        "rounds": args.rounds, "size_bytes": args.size_mib * MIB, "requests_per_round": args.requests,
        "request_body_bytes": SMALL, "warmup_download_bytes": WARMUP_MIB * MIB,
        "warmup_requests": WARMUP_REQUESTS, "order": "interleaved rounds after one warm-up run each",
        "server": f"ThreadingHTTPServer on {HOST_LOOPBACK} in the benchmark's process, 1 MiB writes",
        "client": "curl -w %{speed_download} (bytes/s of the transfer alone); python3 urllib/http.client",
        "left_behind": left, "orphans_reaped": reaped, "kernel": platform.release(), "cpus": os.cpu_count(),
        "versions": {"rootsand": version([args.rootsand, "--version"]), "curl": version(["curl", "--version"]),
                     "slirp4netns": version(["slirp4netns", "--version"]),
                     "python3": version(["python3", "--version"])},
    }
    json.dump({"meta": meta, "download": downloads, "latency": requests}, sys.stdout, indent=2)


# ---------------------------------------------------------------------------------------------------------
# Outer process (root)

def ratio(entry, base, key):
    """entry's median over base's, or None."""
    if base is None or key not in entry or key not in base:
        return None
    return round(entry[key]["median"] / base[key]["median"], 3)


def tables(data):
    """The results as markdown tables; fills in the ratios to slirp and to the host."""
    meta, out, notes = data["meta"], [], []
    for test, key, unit in (("download", "mbps", "MB/s"), ("latency", "ms", "ms")):
        entries = data[test]
        host = next((e for e in entries if e["mode"] == "host" and key in e), None)
        slirp = next((e for e in entries if e["mode"] == "slirp" and key in e), None)
        if test == "download":
            out.append(f"Download of {meta['size_bytes'] // MIB} MiB from {HOST_LOOPBACK} (curl's "
                       f"%{{speed_download}}, 1 MB = 10^6 bytes), {meta['rounds']} round(s):\n")
            out.append(f"| client | median {unit} | p10 | p90 | x slirp | x host | runs {unit} |")
        else:
            out.append(f"\nLatency of one GET ({SMALL} bytes, a new connection each) from a loop in one "
                       f"process, {meta['requests_per_round']} requests x {meta['rounds']} round(s):\n")
            out.append(f"| client | median {unit} | p10 | p90 | x slirp | x host | round medians {unit} |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        for e in entries:
            if e.get("stderr"):
                notes.append(f"{test}: {e['name']}: said on stderr: " + " / ".join(e["stderr"][:3]))
            if key not in e:
                out.append(f"| {e['name']} | skipped | - | - | - | - | - |")
                notes.append(f"{test}: {e['name']}: skipped: {e['skipped'] or 'no runs'}")
                continue
            e["x_slirp"], e["x_host"] = ratio(e, slirp, key), ratio(e, host, key)
            digits = 0 if test == "download" else 3
            per_round = [r["mbps"] for r in e["runs"]] if test == "download" else e["round_medians_ms"]
            cells = [e["name"]] + [f"{e[key][k]:.{digits}f}" for k in ("median", "p10", "p90")]
            cells += ["n/a" if x is None else f"{x:.2f}" for x in (e["x_slirp"], e["x_host"])]
            cells.append(" ".join(f"{v:.{digits}f}" for v in per_round))
            out.append("| " + " | ".join(cells) + " |")
    if meta["left_behind"]:
        notes.append(f"left behind: {len(meta['left_behind'])} processes: {'; '.join(meta['left_behind'][:4])}")
    if meta["orphans_reaped"]:
        notes.append(f"{meta['orphans_reaped']} process(es) outlived their parent and exited later (reaped)")
    return "\n".join(out + ([""] + notes if notes else []))


def outer(args):
    print(f"proxy.py: as {args.user}: {args.rounds} round(s) of a {args.size_mib} MiB download and of "
          f"{args.requests} small GETs, for each of {len(CLIENTS)} clients", file=sys.stderr)
    inner_args = ["--rounds", str(args.rounds), "--size-mib", str(args.size_mib), "--requests", str(args.requests)]
    data = run_as_user(os.path.abspath(__file__), args, lambda workdir, user: (None, "no rootfs needed"), inner_args)
    data["meta"]["quick"] = args.quick
    print(tables(data))  # also fills in x_slirp and x_host
    save(args.json, data)


def main():
    p = argparse.ArgumentParser(description="Throughput and per-connection latency of rootsand's --net proxy "
                                            "against --net slirp and the host's loopback.")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: 1 round, a 256 MiB download, 50 requests (unless given)")
    p.add_argument("--rounds", type=int, help="timed rounds of each test (default 5; --quick 1)")
    p.add_argument("--size-mib", type=int, help="download size in MiB (default 1024; --quick 256)")
    p.add_argument("--requests", type=int, help="small GETs per latency run (default 200; --quick 50)")
    p.add_argument("--json", default=RESULTS, help="where to write the results (default bench/results/proxy.json)")
    add_user_options(p)
    add_inner_options(p)
    args = p.parse_args()
    quick = args.quick and not args.inner
    for name, full, small in (("rounds", 5, 1), ("size_mib", 1024, 256), ("requests", 200, 50)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    main()
