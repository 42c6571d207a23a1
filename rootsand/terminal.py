"""The terminal relay of a new session (like `podman run -it`): the command gets a pty of its own.

With new_session the command calls setsid(), so it has no controlling terminal of the host. It must not
hold the user's terminal through an inherited fd either: with it, it could read keystrokes or leave
the terminal in raw mode. So whenever stdin, stdout or stderr is a terminal, the command gets a fresh
pty in its place, and the launcher relays: the user's keys in (putting the terminal in raw mode for the
duration, when stdin is one), the command's output out. Neither direction may stall the launcher past
its --timeout: writes into the pty are non-blocking, and the user's side (a stopped terminal, a pipe to a
slow reader) is written by a thread of its own, with a bounded queue that holds the command back.
"""

import errno
import fcntl
import os
import queue
import termios
import threading
import tty

BUFFER = 1 << 16


class Relay:
    def __init__(self):
        self.master, self.slave = os.openpty()
        os.set_inheritable(self.slave, True)
        self.input = os.isatty(0)  # relay the user's keys
        self.output = 1 if os.isatty(1) else 2  # where the command's terminal output goes
        self._saved = None
        self._open = True
        self._stdin_open = self.input
        self._to_pty = b""
        self._to_user: queue.Queue = queue.Queue(maxsize=16)
        self._writer: threading.Thread | None = None

    def start(self) -> None:
        """In the launcher, once the sandbox is forked: our copy of the slave goes, the user's terminal goes raw."""
        os.close(self.slave)
        self.slave = -1
        os.set_blocking(self.master, False)
        self._writer = threading.Thread(target=self._write_to_user, name="rootsand-relay", daemon=True)
        self._writer.start()
        self.copy_window_size()
        if self.input:
            try:
                self._saved = termios.tcgetattr(0)
                tty.setraw(0, termios.TCSANOW)
            except termios.error:
                self._saved = None

    def copy_window_size(self) -> None:
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
        while (data := self._to_user.get()) is not None:
            while data and not broken:
                try:
                    data = data[os.write(self.output, data):]
                except OSError:
                    broken = True  # EPIPE, EIO: nobody reads any more; keep draining the queue

    def read_fds(self) -> list[int]:
        fds = [0] if self._stdin_open and len(self._to_pty) < BUFFER else []
        return fds + ([self.master] if self._open and not self._to_user.full() else [])

    def write_fds(self) -> list[int]:
        return [self.master] if self._open and self._to_pty else []

    def pump(self, readable: list[int], writable: list[int]) -> None:
        """Move what is ready: the user's keys towards the pty, the command's output out to the user."""
        if 0 in readable and self._stdin_open:
            data = _read(0)
            if data is None:
                self._stdin_open = False
            else:
                self._to_pty += data
        if self.master in writable and self._to_pty:
            try:
                written = os.write(self.master, self._to_pty)
                self._to_pty = self._to_pty[written:]
            except BlockingIOError:
                pass
        if self.master in readable:
            data = _read(self.master)
            if data:
                self._to_user.put_nowait(data)  # read_fds offers the master only while there is room
            elif data is None:
                self._open = False  # every copy of the slave is closed: the sandbox is gone

    def drain(self, seconds: float = 2.0) -> None:
        """The command's last output, after it ended, for as long as the user's side takes it."""
        try:
            while self._open and (data := _read(self.master)):
                self._to_user.put(data, timeout=seconds)
            self._to_user.put(None, timeout=seconds)
        except queue.Full:
            return
        if self._writer:
            self._writer.join(seconds)

    def stop(self) -> None:
        """Give the user's terminal back as it was; safe to call more than once."""
        if self._writer and self._writer.is_alive():
            self.drain(0.5)
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None
        if self._open or self.master >= 0:
            os.close(self.master)
            self.master = -1
            self._open = False


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


def attach_to_slave(slave: int) -> None:
    """In the command's process, after setsid(): the pty becomes its controlling terminal and replaces
    every one of stdin, stdout and stderr that was a terminal."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in [fd for fd in (0, 1, 2) if os.isatty(fd)]:
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
