"""The terminal relay of a new session (like `podman run -it`): the command gets a pty of its own.

With new_session the command calls setsid(), so it has no controlling terminal of the host. It must not
hold the user's terminal through an inherited fd either: with it, it could read keystrokes or leave
the terminal in raw mode. So whenever stdin, stdout or stderr is a terminal, the command gets a fresh
pty in its place, and the launcher relays: the user's keys in (putting the terminal in raw mode for the
duration, when stdin is one), the command's output out.

The pty comes from the sandbox's own devpts (so `tty` inside says /dev/pts/0, and ssh, gpg and sudo-like
tools find their terminal): PID 1 opens it once the file system is built and passes the master out over
a socket (as podman's console socket does). Only where the sandbox has no /dev of its own does PID 1
take one from the host's devpts.

What the sandbox writes passes through termfilter.OutputFilter: no clipboard writes, window operations
or queries whose answers would be typed back into the sandbox, and at exit every kind of terminal state it
touched (modes, alternate screen, scroll region, character sets, attributes, ...) is reset.
Neither direction may stall the launcher past its --timeout: writes into the pty are non-blocking, and the
user's side (a stopped terminal, a pipe to a slow reader) is written by a thread of its own, from a
bounded outbox that holds the command back: while it is full the master is not read. The thread wakes
the select loop through a pipe once it has made room, so output moves at the terminal's speed.
"""

import errno
import fcntl
import os
import select
import socket
import termios
import threading
import time
import tty

BUFFER = 1 << 16
OUTBOX = 1 << 16  # bytes waiting for the user's terminal before the relay stops reading the pty


def console_pair() -> tuple[socket.socket, int]:
    """The launcher's end of the console socket, and the fd the sandbox's PID 1 sends the pty master over."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = theirs.detach()
    os.set_inheritable(fd, True)
    return ours, fd


def open_pty(uid: int, gid: int) -> tuple[int, int]:
    """In PID 1: a pty (from the devpts /dev/ptmx leads to), its slave owned by the command's ids."""
    master, slave = os.openpty()
    os.fchown(slave, uid, gid)
    os.fchmod(slave, 0o620)
    os.set_inheritable(slave, True)
    return master, slave


def send_master(console_fd: int, master: int) -> None:
    with socket.socket(fileno=console_fd) as console:
        socket.send_fds(console, [b"M"], [master])
    os.close(master)


class _Outbox:
    """The filtered output waiting for the writer thread. The relay's loop puts, the writer takes all that
    waits at once (few, large writes); a put waits while the box holds `limit` bytes or more. Taking from
    a full box writes a byte to a pipe (`wake`), which the loop selects on: it stops reading the pty while
    the box is full, and must hear when there is room again."""

    def __init__(self, limit: int):
        self.limit = limit
        self._chunks: list[bytes] = []
        self._size = 0
        self._closed = False
        self._changed = threading.Condition()
        self.wake, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def full(self) -> bool:
        return self._size >= self.limit

    def put(self, data: bytes | None, timeout: float | None = None) -> bool:
        """Add data (None closes the box: the writer ends once it has taken the rest); False if the box
        stayed full for `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._size < self.limit, timeout):
                return False
            if data is None:
                self._closed = True
            elif data:
                self._chunks.append(data)
                self._size += len(data)
            self._changed.notify_all()
            return True

    def take(self) -> bytes | None:
        """Everything waiting, once there is something; None when the box is closed and empty."""
        with self._changed:
            self._changed.wait_for(lambda: self._chunks or self._closed)
            if not self._chunks:
                return None
            data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
            was_full = self._size >= self.limit
            self._chunks.clear()
            self._size = 0
            self._changed.notify_all()
        if was_full:  # the loop may be waiting for room (it only ever adds, so it saw the box full too)
            try:
                os.write(self._wake_w, b"\0")
            except BlockingIOError:
                pass  # bytes it has not read yet wake it all the same
        return data

    def clear_wake(self) -> None:
        try:
            os.read(self.wake, 4096)
        except BlockingIOError:
            pass

    def close_pipe(self) -> None:
        os.close(self.wake)
        os.close(self._wake_w)


class Relay:
    def __init__(self, every: bool = False, master: int | None = None):
        """`every`: the command's stdin, stdout and stderr all become the pty (--tty), so its output goes to
        our stdout. `master`: a pty master we were handed (`rootsand attach`), instead of one from PID 1."""
        self.console, self.console_fd = console_pair() if master is None else (None, -1)  # the master comes over it
        self.master = -1
        self.input = os.isatty(0)  # relay the user's keys
        self.output = 1 if every or os.isatty(1) else 2  # where the command's terminal output goes
        self.filter = None  # made in start(): compiling its patterns waits until the sandbox is being built
        self._saved = None
        self._open = True
        self._stdin_open = self.input
        self._to_pty = b""
        self._to_user: _Outbox | None = None  # made in start(): its pipe is not for the sandbox's processes
        self._writer: threading.Thread | None = None
        self._written = 0  # bytes the writer thread has written
        self._drained = False
        self.listener: socket.socket | None = None  # a detached sandbox's: `rootsand attach` connects here
        self.attached: socket.socket | None = None  # an attach holds the master: we leave it alone meanwhile
        self.detach_keys = b""  # in `rootsand attach`: typed, they end the attach (the sandbox goes on)
        self.detached = False
        self._last_key = b""
        if master is not None:
            self._take_master(master)

    def start(self) -> None:
        """In the launcher, once the sandbox is forked: the sandbox's end goes, the user's terminal goes raw."""
        from rootsand.runtime.termfilter import OutputFilter

        if self.console_fd >= 0:
            os.close(self.console_fd)
        self.console_fd = -1
        self.filter = OutputFilter()
        self._to_user = _Outbox(OUTBOX)
        self._writer = threading.Thread(target=self._write_to_user, name="rootsand-relay", daemon=True)
        self._writer.start()
        if self.input:
            try:
                self._saved = termios.tcgetattr(0)
                tty.setraw(0, termios.TCSANOW)
            except termios.error:
                self._saved = None

    def receive_master(self) -> None:
        """The console socket is readable: the pty master from PID 1, or the end (setup failed)."""
        try:
            _, fds, _, _ = socket.recv_fds(self.console, 1, 1)
        except OSError:
            fds = []
        self.console.close()
        self.console = None
        if not fds:
            self._open = False
            return
        self._take_master(fds[0])

    def _take_master(self, master: int) -> None:
        self.master = master
        os.set_blocking(self.master, False)
        self.copy_window_size()

    def listen(self, path: str) -> None:
        """A detached sandbox with a terminal: `rootsand attach` connects to the Unix socket at `path`
        (in our private runtime directory) and is handed the pty master, one attach at a time."""
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        self.listener.bind(path)
        self.listener.listen(4)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        outside = _outside_sandboxes(conn)
        with_master = outside and self.attached is None and self.master >= 0 and self._open
        try:
            if with_master:
                socket.send_fds(conn, [b"M"], [self.master])
            else:  # denied, or busy: attached elsewhere (or no terminal yet, or ended)
                conn.sendall(b"B" if outside else b"D")
        except OSError:
            with_master = False
        if not with_master:
            conn.close()
            return
        self.attached = conn  # until it closes: its end of file hands the pty back to us

    def _attach_ended(self) -> None:
        self.attached.close()
        self.attached = None

    def copy_window_size(self) -> None:
        if self.master < 0:
            return
        for fd in (0, 1, 2):
            try:
                size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
                return
            except OSError:
                continue

    def _write_to_user(self) -> None:
        """The writer thread: blocking writes are fine here; a closed output just ends the relaying out."""
        broken = False
        while (data := self._to_user.take()) is not None:
            left = memoryview(data)
            while left and not broken:
                try:
                    written = os.write(self.output, left)
                    left = left[written:]
                    self._written += written  # drain() watches this to tell a slow terminal from a stuck one
                except OSError:
                    broken = True  # EPIPE, EIO: nobody reads any more; keep emptying the outbox

    def read_fds(self) -> list[int]:
        fds = [0] if self._stdin_open and len(self._to_pty) < BUFFER else []
        if self.console is not None:
            fds.append(self.console.fileno())
        if self.listener is not None:
            fds.append(self.listener.fileno())
        if self.attached is not None:
            return fds + [self.attached.fileno()]  # the master is the attach's meanwhile
        if self._to_user is None:
            return fds
        fds.append(self._to_user.wake)  # room again in the outbox: the master may be read again
        return fds + ([self.master] if self._open and self.master >= 0 and not self._to_user.full() else [])

    def write_fds(self) -> list[int]:
        return [self.master] if self._open and self.master >= 0 and self._to_pty else []

    def pump(self, readable: list[int], writable: list[int]) -> None:
        """Move what is ready: the user's keys towards the pty, the command's output out to the user."""
        if self.console is not None and self.console.fileno() in readable:
            self.receive_master()
        if self.listener is not None and self.listener.fileno() in readable:
            self._accept()
        if self.attached is not None and self.attached.fileno() in readable:
            self._attach_ended()  # (nothing is ever sent on it: readable is its end)
            return
        if self._to_user is not None and self._to_user.wake in readable:
            self._to_user.clear_wake()
        if 0 in readable and self._stdin_open:
            data = _read(0)
            if data is None:
                self._stdin_open = False
            else:
                self._to_pty += self._before_detach_keys(data)
        if self.master in writable and self._to_pty:
            try:
                written = os.write(self.master, self._to_pty)
                self._to_pty = self._to_pty[written:]
            except BlockingIOError:
                pass
        if self.master in readable:
            data = _read(self.master)
            if data:
                self._to_user.put(self.filter.feed(data))  # read_fds offers the master only while there is room
            elif data is None:
                self._open = False  # every copy of the slave is closed: the sandbox is gone

    @property
    def ended(self) -> bool:
        """The pty's other side is closed (the command is gone), or it never came."""
        return not self._open

    def _before_detach_keys(self, data: bytes) -> bytes:
        """The keys to pass on, up to the detach keys (ctrl-p ctrl-q, as podman's), which set `detached` and
        are not passed on. Keys that may begin them wait for the next read (as podman's do)."""
        if not self.detach_keys:
            return data
        seen, self._last_key = self._last_key + data, b""
        at = seen.find(self.detach_keys)
        if at >= 0:
            self.detached = True
            self._stdin_open = False
            return seen[:at]
        for size in range(len(self.detach_keys) - 1, 0, -1):
            if seen.endswith(self.detach_keys[:size]):
                self._last_key = seen[-size:]
                return seen[:-size]
        return seen

    def drain(self, patience: float = 5.0) -> None:
        """The command's last output, after it ended, for as long as the user's side keeps taking it (a slow
        terminal is waited for; one that takes nothing for `patience` seconds is not); then the resets for
        the terminal state the sandbox touched, which go out in any case."""
        if self._drained or not self._writer:
            return
        self._drained = True
        moving = True
        while moving and self._open and self.master >= 0 and self.attached is None and (data := _read(self.master)):
            moving = self._put(self.filter.feed(data), patience)
        resets = self.filter.finish()
        if moving and self._put(resets, patience) and self._put(None, patience):
            while self._writer.is_alive():
                seen = self._written
                self._writer.join(patience)
                if self._written == seen:
                    break
            if not self._writer.is_alive():
                return
        self._write_now(resets)  # the writer is stuck: as much of the resets as the terminal takes now

    def _put(self, data: bytes | None, patience: float) -> bool:
        """Put `data` in the outbox (None: close it), waiting while the writer makes progress; False when it
        is stuck."""
        while True:
            seen = self._written
            if self._to_user.put(data, timeout=patience):
                return True
            if self._written == seen:
                return False

    def _write_now(self, data: bytes, seconds: float = 1.0) -> None:
        """Write without the writer thread, never blocking for more than `seconds`."""
        blocking = os.get_blocking(self.output)
        deadline = time.monotonic() + seconds
        try:
            os.set_blocking(self.output, False)
            while data and select.select([], [self.output], [], max(0.0, deadline - time.monotonic()))[1]:
                data = data[os.write(self.output, data):]
        except OSError:
            pass
        finally:
            try:
                os.set_blocking(self.output, blocking)
            except OSError:
                pass

    def stop(self) -> None:
        """Give the user's terminal back as it was; safe to call more than once."""
        if self._writer and self._writer.is_alive():
            self.drain(0.5)  # a failure or a signal: the user waits for the terminal, briefly
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        self._open = False
        for sock in (self.console, self.listener, self.attached):
            if sock is not None:
                sock.close()
        self.console = self.listener = self.attached = None
        if self._to_user is not None and not (self._writer and self._writer.is_alive()):
            self._to_user.close_pipe()  # a stuck writer keeps it: it may still write its wake-up byte
            self._to_user = None


def peer_pid(sock: socket.socket) -> int:
    """The pid (in our PID namespace; 0 where it is not seen) of the process that made the other end of the
    Unix socket `sock`, as it was when it connected (SO_PEERCRED)."""
    import struct

    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]


def _outside_sandboxes(conn: socket.socket) -> bool:
    """The process that connected is in our user namespace: no sandbox's. A sandbox shown the runtime
    directory (a profile may bind it) can connect through a read-only bind, and with the terminal it could
    type into a sandbox with more rights than its own."""
    try:
        pid = peer_pid(conn)
        theirs, ours = os.stat(f"/proc/{pid}/ns/user"), os.stat("/proc/self/ns/user")
    except OSError:
        return False
    return pid > 0 and (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)


def _read(fd: int) -> bytes | None:
    """Data; b"" when nothing is there just now; None at the end (the pty's other side is closed)."""
    try:
        data = os.read(fd, BUFFER)
    except BlockingIOError:
        return b""
    except OSError as e:
        if e.errno == errno.EIO:
            return None
        raise
    return data if data else None


def attach_to_slave(slave: int, every: bool = False) -> None:
    """In the command's process, after setsid(): the pty becomes its controlling terminal and replaces
    every one of stdin, stdout and stderr that was a terminal (`every`: all three, --tty)."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in [fd for fd in (0, 1, 2) if every or os.isatty(fd)]:
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
