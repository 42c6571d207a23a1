"""Operating running sandboxes: ps, stop, inspect, exec. They read the registry (registry.py) and reach a
sandbox through the namespaces its launcher holds (PID 1 is not dumpable);
every pid is checked against its recorded start time before it is signalled or joined."""

import errno
import json
import os
import select
import signal
import sys
import time

from rootsand.errors import RootsandError
from rootsand.ops import registry

NS_ORDER = ("user", "mount", "pid", "uts", "ipc", "net", "cgroup", "time")  # user first: it grants the rest


def age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def ps_rows(show_all: bool = False) -> list[dict]:
    now = time.time()
    rows = []
    for entry in registry.entries():
        if entry.get("status") != "running" and not show_all:
            continue
        rows.append({"name": entry["name"], "pid": entry.get("pid1", {}).get("pid"), "profile": entry.get("profile"),
                     "net": entry.get("net"), "command": entry.get("command", []),
                     "age_seconds": round(now - entry.get("created", now), 3), "status": entry.get("status"),
                     "launcher": entry["launcher"]["pid"]})
    return rows


def ps_table(rows: list[dict]) -> str:
    from rootsand.errors import printable

    header = ("NAME", "PID", "PROFILE", "NET", "AGE", "STATUS", "COMMAND")
    table = [header] + [(r["name"], str(r["pid"] or "-"), str(r["profile"]), str(r["net"]), age(r["age_seconds"]),
                         str(r["status"]), printable(" ".join(r["command"]))) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def _pidfd(process: dict) -> int | None:
    """A pidfd of the recorded process, if it is still the one that was recorded (start time)."""
    pid = process.get("pid")
    if not pid:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if registry.start_time(pid) != process.get("start"):  # checked after opening: the fd cannot change hands
        os.close(fd)
        return None
    return fd


def _wait_gone(fd: int, seconds: float) -> bool:
    return bool(select.select([fd], [], [], seconds)[0])


def stop(name: str, grace: float = 10.0) -> None:
    """SIGTERM to the command (the launcher passes it to PID 1, which passes it on), SIGKILL of the whole
    sandbox after `grace` seconds; returns once the sandbox is gone."""
    entry = registry.find(name)
    launcher = _pidfd(entry["launcher"])
    if launcher is None:
        raise RootsandError(f"no sandbox named {name} is running")
    try:
        signal.pidfd_send_signal(launcher, signal.SIGTERM)
        if _wait_gone(launcher, grace):
            return
        pid1 = _pidfd(entry.get("pid1", {}))
        if pid1 is not None:  # PID 1's death takes everything in its PID namespace with it
            try:
                signal.pidfd_send_signal(pid1, signal.SIGKILL)
            finally:
                os.close(pid1)
        if not _wait_gone(launcher, 10):
            signal.pidfd_send_signal(launcher, signal.SIGKILL)
            _wait_gone(launcher, 10)
    except ProcessLookupError:
        pass
    finally:
        os.close(launcher)


# ---------------------------------------------------------------------------------------------- joining

def _ns_fds(entry: dict) -> dict[str, int]:
    """Open the sandbox's namespaces through the launcher, which holds them (/proc/LAUNCHER/fd/N; PID 1 is
    not dumpable), checking that each is the one recorded."""
    launcher = entry.get("launcher", {})
    held = entry.get("ns_fds") or {}
    fd = _pidfd(launcher)
    if fd is None or not held:
        if fd is not None:
            os.close(fd)
        raise RootsandError(f"sandbox {entry['name']} is not running any more")
    os.close(fd)
    fds = {}
    try:
        for ns in NS_ORDER:
            if ns not in entry.get("namespaces", {}):
                continue
            if ns not in held:
                raise RootsandError(f"sandbox {entry['name']}: its launcher does not hold its {ns} namespace")
            fds[ns] = os.open(f"/proc/{launcher['pid']}/fd/{int(held[ns])}", os.O_RDONLY | os.O_CLOEXEC)
            if os.fstat(fds[ns]).st_ino != entry["namespaces"][ns]:
                raise RootsandError(f"sandbox {entry['name']}: its {ns} namespace is not the one recorded")
        if registry.start_time(launcher["pid"]) != launcher.get("start"):
            raise RootsandError(f"sandbox {entry['name']} is not running any more")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def join(fds: dict[str, int]) -> None:
    """setns into each namespace, user first (it grants the capabilities the others need)."""
    from rootsand.linux import libc

    for ns in NS_ORDER:
        if ns in fds:
            libc.setns(fds[ns], libc.NAMESPACE_FLAGS[ns])
            os.close(fds[ns])


def inspect(name: str) -> dict:
    entry = registry.find(name)
    info = {"name": name, "pids": {k: entry[k]["pid"] for k in ("launcher", "pid1")},
            "namespaces": entry.get("namespaces", {}), "profile": entry.get("profile"),
            "command": entry.get("command"), "network": {"mode": entry.get("net"), "publish": entry.get("publish")}}
    ids = (entry.get("plan") or {}).get("ids") or {}
    for kind in ("uid", "gid"):
        info[f"{kind}_map"] = [list(line) for line in ids.get(f"{kind}_lines", [])]  # as written at the start
    inside = processes_in(entry)
    info["processes"] = inside
    own_view = [p for p in inside if p["mount_ns"] == entry.get("namespaces", {}).get("mount")]
    if own_view:  # not a process of a nested mount namespace, which a sandbox could fill with anything
        info["mounts"] = _mounts(own_view[0]["pid"])
        info["limits"] = _limits(own_view[0]["pid"])
    if entry.get("net") != "host":
        info["network"]["interfaces"] = _interfaces(entry)
    info["plan"] = entry.get("plan")
    return info


def processes_in(entry: dict) -> list[dict]:
    """The sandbox's processes this user can see (all but PID 1, which is not dumpable), lowest pid first."""
    pid_ns = entry.get("namespaces", {}).get("pid")
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}/ns/pid").st_ino != pid_ns:
                continue
            mount_ns = os.stat(f"/proc/{name}/ns/mnt").st_ino
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        found.append({"pid": int(name), "command": argv, "mount_ns": mount_ns})
    return sorted(found, key=lambda p: p["pid"])


def _mounts(pid: int) -> list[dict]:
    out = []
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            out.append({"destination": fields[4], "type": rest[0], "source": rest[1] if len(rest) > 1 else "",
                        "options": fields[5].split(","), "root": fields[3]})
    return out


def _limits(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/limits") as f:
            return [line.rstrip() for line in f][1:]
    except OSError:
        return []


def _interfaces(entry: dict) -> list[dict]:
    """The sandbox's interfaces and addresses, read over netlink from inside its network namespace."""
    fds = _ns_fds(entry)
    wanted = {ns: fds.pop(ns) for ns in ("user", "net") if ns in fds}
    for fd in fds.values():
        os.close(fd)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            join(wanted)
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
                found = {name: [] for name in names.values()}
                for addr in ipr.get_addr():
                    found[names.get(addr["index"], "?")].append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
            os.write(write_end, json.dumps([{"name": n, "addresses": a} for n, a in found.items()]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    for fd in wanted.values():
        os.close(fd)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        return json.loads(data or b"[]")
    except ValueError:
        return []


def exec_in(name: str, command: list[str], env: list[str], user: str | None, chdir: str | None) -> int:
    """Run COMMAND inside a running sandbox, as its command runs: same namespaces, ids, environment rules,
    capabilities, no_new_privs, rlimits and seccomp filter."""
    from rootsand.config.model import parse_env_assignment, parse_user
    from rootsand.config.plan import Plan
    from rootsand.security.seccomp import compile as seccomp

    entry = registry.find(name)
    plan = Plan.from_json(entry["plan"])
    env_now = dict(plan.env)
    env_now.update(parse_env_assignment(e) for e in env)
    changes = {"argv": command or ["/bin/sh"], "env": env_now, "chdir": chdir or plan.chdir}
    if user:
        asked = parse_user(user)
        if asked.mode == "ids":
            changes.update(run_uid=asked.uid, run_gid=asked.gid)
        elif asked.mode == "root":
            changes.update(run_uid=0, run_gid=0)
    plan = plan.replace(**changes)
    seccomp_filter = (seccomp.prepare(plan.seccomp, native_only=not plan.compat_syscalls)
                      if plan.seccomp is not None else None)  # built while site-packages is visible
    fds = _ns_fds(entry)
    relay = None
    if plan.new_session and any(os.isatty(fd) for fd in (0, 1, 2)):
        from rootsand.runtime.terminal import Relay

        relay = Relay()
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        _exec_child(plan, fds, seccomp_filter, report_w, relay, entry.get("cgroup"))
    for fd in fds.values():
        os.close(fd)
    os.close(report_w)
    return _supervise(pid, report_r, relay)


def _exec_child(plan, fds, seccomp_filter, report_w: int, relay, cgroup: str | None) -> None:
    """E1: joins the namespaces, then forks the command so it is inside the PID namespace."""
    from rootsand.linux import libc
    from rootsand.runtime import channel, inside, terminal

    code = 125
    try:
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        # Not dumpable before it is in the sandbox's namespaces: until the command's execve (which resets
        # it) no sandbox process may ptrace it, read its environment (the caller's) or its memory, in the
        # moments before its capabilities, no_new_privs and seccomp are in place. PID 1 does the same.
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        if relay is not None:
            relay.console.close()
        if cgroup:  # the sandbox's limits hold for what exec runs too
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
        join(fds)
        pty_slave = None
        if relay is not None:
            master, pty_slave = terminal.open_pty(plan.run_uid, plan.run_gid)
            terminal.send_master(relay.console_fd, master)
        child = os.fork()
        if child == 0:
            inside._run_forked(lambda: inside._exec_command(plan, report_w, seccomp_filter, pty_slave), report_w,
                               False)
        if pty_slave is not None:
            os.close(pty_slave)
        os.close(report_w)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, lambda s, _f, child=child: os.kill(child, s))
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
    except RootsandError as e:
        channel.send_error(report_w, e)
    except OSError as e:
        channel.send_error(report_w, RootsandError(f"cannot join the sandbox: {libc.reason(e)}"))
    finally:
        os._exit(code)


def _supervise(pid: int, report_r: int, relay) -> int:
    from rootsand.runtime import channel, init

    reader = channel.Reader(report_r)
    forward = lambda sig, _frame: os.kill(pid, sig)  # noqa: E731 - E1 passes it to the command
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, forward)
    error = None
    if relay is not None:
        relay.start()
    try:
        pidfd = os.pidfd_open(pid)
        while True:
            reads = [pidfd] + ([reader.fd] if reader.fd is not None else [])
            writes = []
            if relay is not None:
                reads += relay.read_fds()
                writes += relay.write_fds()
            try:
                ready, writable, _ = select.select(reads, writes, [])
            except InterruptedError:
                continue
            if reader.fd is not None and reader.fd in ready:
                for m in reader.read(0):
                    if "error" in m and error is None:
                        error = channel.error_from(m)
            if relay is not None:
                relay.pump(ready, writable)
            if pidfd in ready:
                break
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        if relay is not None:
            relay.drain()
        for m in reader.read(0.2) if reader.fd is not None else []:
            if "error" in m and error is None:
                error = channel.error_from(m)
    finally:
        reader.close()
        if relay is not None:
            relay.stop()
    if error:
        raise error
    code = init.exit_status(status)
    return code


def ns_diff(a: str, b: str) -> list[tuple[str, str, str | None, str | None]]:
    """(type, shared|different|unknown (permission), A's inode, B's inode) for the eight types and the two
    _for_children links; A and B are pids or sandbox names."""
    links = ("user", "mnt", "pid", "uts", "ipc", "net", "cgroup", "time", "pid_for_children", "time_for_children")
    rows = []
    pa, pb = _process_of(a), _process_of(b)
    for link in links:
        ia, ib = _ns_inode(pa, link), _ns_inode(pb, link)
        if ia is None or ib is None:
            verdict = "unknown (permission)"
        else:
            verdict = "shared" if ia == ib else "different"
        rows.append((link, verdict, ia, ib))
    return rows


def _process_of(what: str) -> int:
    if what.isdigit():
        return int(what)
    inside = processes_in(registry.find(what))
    if not inside:
        raise RootsandError(f"sandbox {what} has no process this user can read")
    return inside[0]["pid"]


def _ns_inode(pid: int, link: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{link}")
    except OSError as e:
        if e.errno == errno.ENOENT and not os.path.exists(f"/proc/{pid}"):
            raise RootsandError(f"no process {pid}") from None
        return None


def print_json(data) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
