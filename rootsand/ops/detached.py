"""`rootsand logs`, `rootsand attach` and `rootsand rm`: the detached sandboxes' output, terminals and
records (runtime/detach.py makes them; ops/registry.py says where they are)."""

import errno
import os
import select
import signal
import socket
import sys
import time

from rootsand.errors import RootsandError
from rootsand.ops import registry

DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q, as podman's
FOLLOW_POLL = 0.1  # seconds between looks at a followed log (as `tail -f` without inotify)


def find(name: str) -> dict:
    """The record of the detached sandbox `name`, with its "state" (running, exited, killed)."""
    path = registry.detached_path(name)
    record = registry.load(path) or ({"name": name} if os.path.isfile(path) else None)  # (see detached_records)
    if record is None:
        raise RootsandError(f"no detached sandbox named {name}", hint="'rootsand ps -a' lists them")
    return {**record, "state": registry.record_state(record)}


class _Output:
    """Where `logs` writes: stdout, through the terminal filter when it is a terminal (the log holds what the
    sandbox wrote: nothing in it may reach the user's terminal that the relay would not let through)."""

    def __init__(self):
        self.fd = sys.stdout.fileno()
        self.filter = None
        if os.isatty(self.fd):
            from rootsand.runtime.termfilter import OutputFilter

            self.filter = OutputFilter()

    def write(self, data: bytes) -> None:
        self.write_raw(self.filter.feed(data) if self.filter else data)

    def close(self) -> None:
        if self.filter:
            self.write_raw(self.filter.finish())

    def write_raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]


def logs(name: str, follow: bool) -> None:
    """Print the log of `name`; `follow`: and what comes, until the sandbox has ended."""
    find(name)
    path = registry.detached_path(name, ".log")
    out = _Output()
    try:
        _copy_file(path + ".1", out)
        fd = _open(path)
        while True:
            more = _copy_fd(fd, out) if fd is not None else False
            if not follow:
                break
            if fd is not None and _rotated(fd, path):
                _copy_fd(fd, out)
                os.close(fd)
                fd = _open(path)
                continue
            if fd is None:
                fd = _open(path)
            if not more and find(name)["state"] != "running":
                if fd is not None:
                    _copy_fd(fd, out)  # what came between the last read and the end
                break
            if not more:
                time.sleep(FOLLOW_POLL)
        if fd is not None:
            os.close(fd)
    finally:
        out.close()


def _open(path: str) -> int | None:
    try:
        return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def _copy_file(path: str, out: _Output) -> None:
    fd = _open(path)
    if fd is not None:
        try:
            _copy_fd(fd, out)
        finally:
            os.close(fd)


def _copy_fd(fd: int, out: _Output) -> bool:
    """Copy what `fd` has from where it is; True when there was something."""
    moved = False
    while chunk := os.read(fd, 1 << 16):
        out.write(chunk)
        moved = True
    return moved


def _rotated(fd: int, path: str) -> bool:
    """The log at `path` is a new part: the one `fd` reads became PATH.1 (runtime/detach.py's Log)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    now = os.fstat(fd)
    return (st.st_dev, st.st_ino) != (now.st_dev, now.st_ino)


def attach(name: str) -> int:
    """Take over the terminal of the detached sandbox `name` (run -dt) until ctrl-p ctrl-q (0) or until the
    command ends (its exit status)."""
    from rootsand.errors import say

    record = find(name)
    if record["state"] == "exited":
        raise RootsandError(f"{name} has ended", hint=f"'rootsand logs {name}' shows its output")
    if not record.get("tty"):
        raise RootsandError(f"{name} has no terminal to attach to",
                            hint=f"'rootsand logs -f {name}' follows its output; 'rootsand run -dt' gives one")
    master, held = _take_terminal(name, record.get("launcher") or {})
    launcher = registry.pidfd_of(record.get("launcher", {}))
    from rootsand.runtime.terminal import Relay

    relay = Relay(master=master)
    relay.detach_keys = DETACH_KEYS
    previous = signal.signal(signal.SIGWINCH, lambda *_: relay.copy_window_size())
    relay.start()
    try:
        while not relay.ended and not relay.detached:
            readable, writable, _ = select.select(relay.read_fds(), relay.write_fds(), [])
            relay.pump(readable, writable)
        relay.drain()
    finally:
        relay.stop()
        held.close()  # the launcher reads the terminal into the log again
        signal.signal(signal.SIGWINCH, previous)
    if relay.detached:
        if launcher is not None:
            os.close(launcher)
        say(f"rootsand: detached from {name}: 'rootsand attach {name}' again, 'rootsand logs {name}' for its output")
        return 0
    if launcher is not None:  # the command has ended: its status once the launcher has written it
        select.select([launcher], [], [], 30)
        os.close(launcher)
    ended = find(name)
    return ended.get("exit_code", 0) if ended["state"] == "exited" else 125


def _take_terminal(name: str, launcher: dict) -> tuple[int, socket.socket]:
    """The pty master of `name` from its launcher (terminal.Relay.listen), and the socket it came over: the
    launcher leaves the terminal to us until that socket closes (when we exit, however we exit). The peer
    must be the launcher the record names and the fd a pty master: a socket put in its place (by anyone who
    could write the runtime directory) gets none of our keys."""
    path = registry.detached_path(name, ".attach")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        answer, fds, _, _ = socket.recv_fds(sock, 1, 1)
    except OSError as e:
        sock.close()
        if e.errno in (errno.ECONNREFUSED, errno.ENOENT):
            raise RootsandError(f"cannot attach to {name}: its launcher is gone (killed)",
                                hint=f"'rootsand logs {name}' shows its output") from None
        raise RootsandError(f"cannot attach to {name} at {path}: {e.strerror or e}") from None
    if not fds:
        sock.close()
        if answer == b"D":
            raise RootsandError(f"{name} can be attached only from outside sandboxes")
        raise RootsandError(f"{name} is attached elsewhere", hint="ctrl-p ctrl-q there lets it go")
    why = _not_the_launchers(sock, fds[0], launcher)
    if why:
        for fd in fds:
            os.close(fd)
        sock.close()
        raise RootsandError(f"cannot attach to {name}: {path} {why}", hint="nothing was typed into it")
    return fds[0], sock


def _not_the_launchers(sock: socket.socket, master: int, launcher: dict) -> str | None:
    import stat

    from rootsand.runtime.terminal import peer_pid

    pid = peer_pid(sock)
    if pid != launcher.get("pid") or not registry.alive(pid, launcher.get("start")):
        return f"is served by pid {pid}, not by the sandbox's launcher ({launcher.get('pid')})"
    st = os.fstat(master)
    if not stat.S_ISCHR(st.st_mode) or (os.major(st.st_rdev), os.minor(st.st_rdev)) != (5, 2):
        return "handed over something other than a pty master (/dev/ptmx)"
    return None


def remove(names: list[str], every: bool, force: bool) -> list[str]:
    """Forget detached sandboxes (records and logs); a running one only with `force` (stopped first). The
    names removed."""
    from rootsand.ops.ps import stop

    records = {record["name"]: record for record in registry.detached_records()}
    if every:
        names = [name for name, record in records.items()
                 if record["state"] in ("exited", "killed") or force and record["state"] == "running"]
    elif not names:
        raise RootsandError("name a sandbox to remove, or --all", hint="'rootsand ps -a' lists them")
    removed = []
    for name in names:
        record = records.get(name) or find(name)
        if record["state"] == "starting":  # its record and log are about to be the launcher's
            raise RootsandError(f"{name} is starting", hint="try again once it runs (rootsand ps -a)")
        if record["state"] == "running":
            if not force:
                raise RootsandError(f"{name} is running", hint=f"'rootsand stop {name}' first, or 'rootsand rm -f'")
            stop(name)
        for suffix in (".log", ".log.1", ".attach", ".json"):  # the record last: the name is free then
            registry.forget(registry.detached_path(name, suffix))
        removed.append(name)
    return removed
