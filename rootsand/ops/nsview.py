"""Namespace views, as util-linux lsns and the `nsm` script, done correctly: every namespace this user can
see, held by a process, a thread, an open file descriptor or a bind mount; its owner user namespace
(NS_GET_USERNS); and the rootsand sandbox it belongs to. `monitor` keeps a table per pid and reads only
new pids each tick, so it is cheap and sees a namespace that lives a fraction of a second. `ns_diff`
compares two processes or sandboxes."""

import fcntl
import json
import os
import pwd
import sys
import time

from rootsand.errors import RootsandError
from rootsand.linux import procfs

NS_GET_USERNS = 0xB701
TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def _sandboxes() -> dict[int, str]:
    """Namespace inode -> the name of the rootsand sandbox that made it."""
    from rootsand.ops import registry

    out = {}
    for entry in registry.entries():
        for inode in entry.get("namespaces", {}).values():
            out[inode] = entry["name"]
    return out


def _ns_of(pid: str) -> dict[str, int]:
    return procfs.ns_inodes(pid, TYPES)


def _owner_of(path: str) -> int | None:
    """The inode of the user namespace owning the namespace at `path` (NS_GET_USERNS)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        return os.fstat(owner).st_ino
    finally:
        os.close(owner)


def scan(only_type: str | None = None, only_pid: int | None = None) -> list[dict]:
    """One row per namespace: ns, type, nprocs, pid (lowest), user, command, owner (user ns), sandbox, held."""
    if only_type == "mount":
        only_type = "mnt"
    rows: dict[int, dict] = {}

    def note(inode: int, kind: str, pid: int, how: str, path: str) -> None:
        row = rows.setdefault(inode, {"ns": inode, "type": kind, "nprocs": 0, "pid": None, "user": None,
                                      "command": None, "owner": None, "sandbox": None, "held_by": set(), "_path": path})
        if how == "process":
            row["nprocs"] += 1
            if row["pid"] is None or pid < row["pid"]:
                row["pid"] = pid
        row["held_by"].add(how)

    for pid in procfs.pids():
        for kind, inode in _ns_of(pid).items():
            note(inode, kind, int(pid), "process", f"/proc/{pid}/ns/{kind}")
        try:
            tasks = [t for t in os.listdir(f"/proc/{pid}/task") if t != pid]
        except OSError:
            tasks = []
        for tid in tasks:
            for kind, inode in _ns_of(f"{pid}/task/{tid}").items():
                note(inode, kind, int(pid), "thread", f"/proc/{pid}/task/{tid}/ns/{kind}")
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            link = procfs.ns_link(f"/proc/{pid}/fd/{fd}")
            if link and link[0] in TYPES:
                note(link[1], link[0], int(pid), "fd", f"/proc/{pid}/fd/{fd}")
    try:
        for fields, rest in procfs.mountinfo():
            bound = procfs.parse_ns(fields[3].strip("/")) if rest[:1] == ["nsfs"] else None
            if bound:
                note(bound[1], bound[0], 0, "bind mount", fields[4])
    except OSError:
        pass
    sandboxes = _sandboxes()
    out = []
    for row in rows.values():
        if only_type and row["type"] != only_type:
            continue
        if only_pid is not None and not os.path.exists(f"/proc/{only_pid}") or (
                only_pid is not None and _ns_of(str(only_pid)).get(row["type"]) != row["ns"]):
            continue
        if row["pid"]:
            try:
                row["command"] = _command_of(row["pid"])
                uid = os.stat(f"/proc/{row['pid']}").st_uid
                row["user"] = pwd.getpwuid(uid).pw_name if uid in _uids() else str(uid)
            except (OSError, KeyError):
                pass
        row["owner"] = _owner_of(row.pop("_path"))
        row["sandbox"] = sandboxes.get(row["ns"])
        row["held_by"] = sorted(row["held_by"])
        out.append(row)
    return sorted(out, key=lambda r: (r["type"], r["ns"]))


def _command_of(pid: int | str) -> str:
    return " ".join(procfs.cmdline(pid)).strip()


def _uids() -> set[int]:
    return {p.pw_uid for p in pwd.getpwall()}


def table(rows: list[dict], tree: bool = False) -> str:
    from rootsand.errors import printable

    header = ("NS", "TYPE", "NPROCS", "PID", "USER", "SANDBOX", "COMMAND")
    if tree:
        rows = _as_tree(rows)
    lines = [header]
    for row in rows:
        indent = "  " * row.get("_depth", 0)
        lines.append((indent + str(row["ns"]), row["type"], str(row["nprocs"]), str(row["pid"] or "-"),
                      str(row["user"] or "-"), row["sandbox"] or "-",
                      printable(row["command"] or "(held by " + ", ".join(row["held_by"]) + ")")))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1] for line in lines)


def _as_tree(rows: list[dict]) -> list[dict]:
    """Each user namespace followed by the namespaces it owns, nested."""
    users = {r["ns"]: r for r in rows if r["type"] == "user"}
    children: dict[int | None, list[dict]] = {}
    for row in rows:
        parent = row["owner"] if row["owner"] in users and row["owner"] != row["ns"] else None
        children.setdefault(parent, []).append(row)
    out = []

    def walk(parent, depth):
        for row in sorted(children.get(parent, []), key=lambda r: (r["type"] != "user", r["type"], r["ns"])):
            out.append({**row, "_depth": depth})
            if row["type"] == "user":
                walk(row["ns"], depth + 1)

    walk(None, 0)
    return out


def monitor(as_json: bool, interval: float = 0.05, ticks: int | None = None) -> None:
    """Print namespaces as they appear and disappear. Each tick lists /proc and reads the pids it has not
    seen (a table pid -> start time, namespaces, when first seen): a full rescan happens once, at the start.
    A young process (under YOUNG seconds) is read again each tick: a setup process unshares after its fork,
    and a command forked by a PID 1 is not dumpable (its links unreadable) until its exec."""
    table_: dict[str, tuple[int | None, dict[str, int], float]] = {}
    held: dict[tuple[str, int], set[str]] = {}
    names: dict[int, str] = {}
    first = True
    count = 0

    def drop(pid: str, spaces) -> None:
        for kind, inode in spaces:
            holders = held.get((kind, inode), set())
            holders.discard(pid)
            if not holders:
                held.pop((kind, inode), None)
                _event("gone", kind, inode, pid, "", names.get(inode), as_json)

    while ticks is None or count < ticks:
        count += 1
        clock = time.monotonic()
        now = set(procfs.pids())
        for pid in list(table_):
            if pid not in now or procfs.start_time(int(pid)) != table_[pid][0]:
                drop(pid, table_.pop(pid)[1].items())
        look = [p for p in now if p not in table_ or clock - table_[p][2] < YOUNG]
        if any(p not in table_ for p in look):
            names = _sandboxes()
        for pid in look:
            started, before, seen = table_.get(pid, (procfs.start_time(int(pid)), {}, clock))
            spaces = _ns_of(pid)
            if pid in table_ and not spaces:
                continue  # gone meanwhile, or unreadable now: what was read stands
            table_[pid] = (started, spaces, seen)
            drop(pid, [(kind, inode) for kind, inode in before.items() if spaces.get(kind) != inode])
            for kind, inode in spaces.items():
                if before.get(kind) == inode:
                    continue
                if (kind, inode) not in held:
                    held[(kind, inode)] = set()
                    if not first:
                        try:
                            cmd = _command_of(pid)
                        except OSError:
                            cmd = ""
                        _event("new", kind, inode, pid, cmd, names.get(inode), as_json)
                held[(kind, inode)].add(pid)
        if first:
            # What the first scan saw is not reported: say when watching begins, for users and scripts
            print(f"rootsand: watching {len(held)} namespaces; new and gone ones follow", file=sys.stderr, flush=True)
        first = False
        time.sleep(interval)


YOUNG = 1.0  # seconds during which a new process is read again each tick


def _event(what: str, kind: str, inode: int, pid: str, command: str, sandbox: str | None, as_json: bool) -> None:
    from rootsand.errors import printable

    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    if as_json:
        print(json.dumps({"time": time.time(), "event": what, "type": kind, "ns": inode, "pid": int(pid),
                          "command": command, "sandbox": sandbox}), flush=True)
    else:
        print(f"{stamp} {what:<4} {kind:<6} {inode} pid {pid} {sandbox or '-'} {printable(command)}", flush=True)


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
    from rootsand.ops.inspect import processes_in
    from rootsand.ops.registry import find

    inside = processes_in(find(what))
    if not inside:
        raise RootsandError(f"sandbox {what} has no process this user can read")
    return inside[0]["pid"]


def _ns_inode(pid: int, link: str) -> str | None:
    found = procfs.ns_link(f"/proc/{pid}/ns/{link}")
    if found is None and not os.path.exists(f"/proc/{pid}"):
        raise RootsandError(f"no process {pid}")
    return f"{found[0]}:[{found[1]}]" if found else None
