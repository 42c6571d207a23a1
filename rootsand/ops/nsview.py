"""Namespace views, as util-linux lsns and the `nsm` script, done correctly: every namespace this user can
see, held by a process, a thread, an open file descriptor or a bind mount; its owner user namespace
(NS_GET_USERNS); and the rootsand sandbox it belongs to. `monitor` keeps a table per pid and reads only
new pids each tick, so it is cheap and sees a namespace that lives a fraction of a second. `ns_diff`
compares two processes or sandboxes."""

import fcntl
import json
import os
import pwd
import select
import sys
import time

from rootsand.config.model import NAMESPACE_LINKS
from rootsand.errors import RootsandError
from rootsand.linux import procfs

NS_GET_USERNS = 0xB701
TYPES = ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts")


def _sandboxes() -> dict[int, str]:
    """Namespace inode -> the name of the rootsand sandbox that made it."""
    return _registry_names()[0]


def _registry_names() -> tuple[dict[int, str], dict[int, str]]:
    """The running sandboxes' names by namespace inode (known once the sandbox is up) and by launcher pid
    (from the start: its processes descend from it)."""
    from rootsand.ops import registry

    by_inode, by_launcher = {}, {}
    for entry in registry.entries():
        for inode in entry.get("namespaces", {}).values():
            by_inode[inode] = entry["name"]
        by_launcher[entry["launcher"]["pid"]] = entry["name"]
    return by_inode, by_launcher


def _launched_by(pid: int, launchers: dict[int, str]) -> str | None:
    """The sandbox whose launcher `pid` descends from: its setup process, PID 1 and command are its child,
    grandchild and great-grandchild."""
    for _ in range(4):
        pid = procfs.parent_of(pid)
        if not pid or pid == 1:
            return None
        if pid in launchers:
            return launchers[pid]
    return None


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
    and a command forked by a PID 1 is not dumpable (its links unreadable) until its exec. A sandbox of ours
    can be shorter than a tick: its launcher tells us of its start and end through a FIFO (registry.MONITOR),
    and those lines wait there until we read them."""
    import signal

    from rootsand.ops import registry

    directory = registry.registry_dir()
    registry.remove_stale(directory, registry.MONITOR)  # of monitors that were killed
    fifo_path = os.path.join(directory, f"{registry.MONITOR}-{os.getpid()}.fifo")
    os.mkfifo(fifo_path, 0o600)  # before the first scan: a sandbox that starts after it always finds us
    # Read and write: never an end of file while no launcher has it open
    fifo = os.open(fifo_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(fifo, fcntl.F_SETPIPE_SZ, 1 << 20)  # room for thousands of lines while a scan runs
    except OSError:
        pass  # the default 64 KiB: some hundreds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so the FIFO goes with us
    try:
        _watch(as_json, interval, ticks, fifo)
    finally:
        os.close(fifo)
        os.unlink(fifo_path)


def _watch(as_json: bool, interval: float, ticks: int | None, fifo: int) -> None:
    # pid -> start time, namespaces, when first seen, the sandbox it belongs to (by its ancestry)
    table_: dict[str, tuple[int | None, dict[str, int], float, str | None]] = {}
    held: dict[tuple[str, int], set[str]] = {}  # a namespace -> the pids (and launchers) that hold it
    names: dict[int, str] = {}
    launchers: dict[int, str] = {}
    told: dict[tuple[str, int], str] = {}  # a namespace -> its sandbox, as its launcher (or its ancestry) said
    first = True
    count = 0
    pending = b""

    def event(what: str, key: tuple[str, int], pid, command: str) -> None:
        _event(what, key[0], key[1], pid, command, told.get(key) or names.get(key[1]), as_json)

    def drop(holder: str, spaces, pid=None) -> None:
        for key in spaces:
            holders = held.get(key)
            if holders is None or holder not in holders:
                continue  # its end was said already (a launcher said its sandbox ended)
            holders.discard(holder)
            if not holders:
                event("gone", key, pid or holder, "")
                del held[key]
                told.pop(key, None)

    def hear(message: dict) -> None:
        """A launcher's line: its sandbox is up ("new") or has ended ("gone", all its processes reaped)."""
        holder = f"launcher {message.get('launcher')}"
        pid = message.get("pid") or 0
        for kind, inode in (message.get("namespaces") or {}).items():
            key = (NAMESPACE_LINKS.get(kind, kind), inode)
            if message.get("event") == "new":
                told[key] = message.get("sandbox")
                if key not in held:
                    held[key] = set()
                    event("new", key, pid, message.get("command") or "")
                held[key].add(holder)
            elif key in held:
                # The pids the scans saw in it are gone too (some maybe since the last scan)
                drop(holder, [key], pid)
                for other in [p for p in held.get(key, ()) if p in table_ and
                              procfs.start_time(int(p)) != table_[p][0]]:
                    drop(other, [key])

    while ticks is None or count < ticks:
        count += 1
        clock = time.monotonic()
        now = set(procfs.pids())
        for pid in list(table_):
            if pid not in now or procfs.start_time(int(pid)) != table_[pid][0]:
                drop(pid, table_.pop(pid)[1].items())
        look = [p for p in now if p not in table_ or clock - table_[p][2] < YOUNG]
        if any(p not in table_ for p in look):
            names, launchers = _registry_names()
        for pid in look:
            if pid in table_:
                started, before, seen, sandbox = table_[pid]
            else:  # its ancestry before its namespaces: a process that is gone by then has nothing to read
                started, before, seen = procfs.start_time(int(pid)), {}, clock
                sandbox = _launched_by(int(pid), launchers) if launchers else None
            spaces = _ns_of(pid)
            if pid in table_ and not spaces:
                continue  # gone meanwhile, or unreadable now: what was read stands
            table_[pid] = (started, spaces, seen, sandbox)
            drop(pid, [(kind, inode) for kind, inode in before.items() if spaces.get(kind) != inode])
            for key in spaces.items():
                if before.get(key[0]) == key[1]:
                    continue
                if key not in held:
                    held[key] = set()
                    if not first:
                        try:
                            cmd = _command_of(pid)
                        except OSError:
                            cmd = ""
                        if key[1] not in names and sandbox:
                            told[key] = sandbox  # a sandbox being built: its entry names no namespace yet
                        event("new", key, pid, cmd)
                held[key].add(pid)
        if first:
            # What the first scan saw is not reported: say when watching begins, for users and scripts
            print(f"rootsand: watching {len(held)} namespaces; new and gone ones follow", file=sys.stderr, flush=True)
        first = False
        end = time.monotonic() + interval
        while (left := end - time.monotonic()) > 0 and select.select([fifo], [], [], left)[0]:
            try:
                pending += os.read(fifo, 1 << 16)
            except BlockingIOError:
                continue
            *lines, pending = pending.split(b"\n")
            for line in lines:
                try:
                    message = json.loads(line)
                except ValueError:
                    continue
                message = _launcher_line(message)
                if message is not None:
                    hear(message)


YOUNG = 1.0  # seconds during which a new process is read again each tick


def _launcher_line(message) -> dict | None:
    """A launcher's line from the monitor's FIFO, or None when it is not one as registry.tell_monitors
    writes them: a sandbox that can see the runtime directory can write to the FIFO too (a read-only mount
    does not stop that), and its lines must neither end the monitor nor print what it likes (attack 7)."""
    from rootsand.config.model import validate_name
    from rootsand.errors import RootsandError

    if not isinstance(message, dict) or message.get("event") not in ("new", "gone"):
        return None
    spaces, sandbox = message.get("namespaces"), message.get("sandbox")
    if not isinstance(spaces, dict) or not all(kind in NAMESPACE_LINKS and type(inode) is int and inode > 0
                                               for kind, inode in spaces.items()):
        return None
    if not all(type(message.get(key)) is int and message[key] >= 0 for key in ("launcher", "pid")):
        return None
    if not isinstance(message.get("command", ""), str) or not isinstance(sandbox, str):
        return None
    try:
        validate_name(sandbox)
    except RootsandError:
        return None
    return message


def _event(what: str, kind: str, inode: int, pid: str, command: str, sandbox: str | None, as_json: bool) -> None:
    from rootsand.errors import printable

    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    if as_json:
        print(json.dumps({"time": time.time(), "event": what, "type": kind, "ns": inode, "pid": int(pid),
                          "command": command, "sandbox": sandbox}), flush=True)
    else:
        print(f"{stamp} {what:<4} {kind:<6} {inode} pid {pid} {printable(sandbox or '-')} {printable(command)}",
              flush=True)


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
