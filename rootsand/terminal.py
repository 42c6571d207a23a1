"""The terminal relay of a new session (like `podman run -it`): the command gets a pty of its own.

With new_session the command calls setsid(), so it has no controlling terminal of the host and cannot
push input into it (TIOCSTI) or read it behind the user's back. When rootsand's stdin is a terminal,
the command still gets an interactive one: a fresh pty whose other end the launcher relays to the
user's terminal, which it puts in raw mode for the duration (line editing, ^C and ^Z are then the
pty's business, inside the sandbox).
"""

import errno
import fcntl
import os
import termios
import tty


class Relay:
    def __init__(self):
        self.master, self.slave = os.openpty()
        os.set_inheritable(self.slave, True)
        self._saved = None
        self._open = True
        self._stdin_open = True

    def start(self) -> None:
        """In the launcher, once the sandbox is forked: our copy of the slave goes, the user's terminal goes raw."""
        os.close(self.slave)
        self.slave = -1
        self.copy_window_size()
        try:
            self._saved = termios.tcgetattr(0)
            tty.setraw(0, termios.TCSANOW)
        except termios.error:
            self._saved = None

    def copy_window_size(self) -> None:
        try:
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    def fds(self) -> list[int]:
        return ([0] if self._stdin_open else []) + ([self.master] if self._open else [])

    def pump(self, ready: list[int]) -> None:
        """Move what is ready: the user's keys into the pty, the command's output out to the user."""
        if 0 in ready:
            data = _read(0)
            if data:
                os.write(self.master, data)
            else:
                self._stdin_open = False
        if self.master in ready:
            data = _read(self.master)
            if data:
                os.write(1, data)
            else:
                self._open = False  # every copy of the slave is closed: the sandbox is gone

    def drain(self) -> None:
        """The command's last output, after it ended."""
        os.set_blocking(self.master, False)
        while self._open and (data := _read(self.master)):
            os.write(1, data)

    def stop(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None
        os.close(self.master)
        self._open = False


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""
    except OSError as e:
        if e.errno == errno.EIO:  # the pty's other side closed
            return b""
        raise


def attach_to_slave(slave: int) -> None:
    """In the command's process, after setsid(): the pty becomes its controlling terminal and its stdio."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    outputs = [fd for fd in (1, 2) if os.isatty(fd)]
    os.dup2(slave, 0)
    for fd in outputs:
        os.dup2(slave, fd)
    if slave > 2:
        os.close(slave)
