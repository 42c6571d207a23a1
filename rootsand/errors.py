"""The one error type rootsand reports, and the exit statuses users rely on (CONTRACT.md)."""

import enum  # imported on every path anyway (re and signal import it)


class ExitCode(enum.IntEnum):
    """The exit statuses; each is the int itself (os._exit, sys.exit and JSON take it as it is)."""

    OK = 0
    TIMEOUT = 124
    FAILURE = 125  # rootsand itself failed; nothing was run
    NOT_EXECUTABLE = 126
    NOT_FOUND = 127


class RootsandError(Exception):
    """A failure to report as one `rootsand: error:` line, and a `rootsand: hint:` line when a fix is known."""

    def __init__(self, message: str, hint: str | None = None, code: int = ExitCode.FAILURE):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = int(code)

    def lines(self) -> list[str]:
        out = [f"rootsand: error: {printable(self.message)}"]
        if self.hint:
            out.append(f"rootsand: hint: {printable(self.hint)}")
        return out


def printable(text: str) -> str:
    """`text` with control characters (C0, DEL, C1) written as \\xNN: messages carry paths and link targets
    a sandbox may have chosen, and an escape sequence in them must not reach the user's terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else f"\\x{ord(ch):02x}" if ord(ch) < 0x100
                   else f"\\u{ord(ch):04x}" for ch in text)


def stage(message: str) -> None:
    """A `run -v` line: `message` with the seconds since rootsand's first line of Python."""
    import time

    from rootsand import STARTED

    say(f"rootsand: {time.monotonic() - STARTED:8.4f}s {printable(message)}")


def warn(message: str) -> None:
    say(f"rootsand: warning: {printable(message)}")


def say(line: str) -> None:
    """A line of rootsand's on stderr that never raises and never blocks for long: the checks after a run go
    on whatever happened to stderr. A reader that went away (`| head`) loses the line; one slower than us is
    waited for, up to 10 s, and once that ran out the lines after it are tried only once. A terminal or pipe is
    written through a description of our own, non-blocking: the sandbox shares the original and can make it
    blocking, stop the terminal's output (tcflow) or fill the pipe."""
    import os
    import select
    import sys
    import time

    global _deadline
    try:
        sys.stderr.flush()
        fd = _own_stderr(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture), or no stderr at all
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        return
    data = f"{line}\n".encode("utf-8", "backslashreplace")
    deadline = time.monotonic() + _deadline
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                _deadline = 0.0  # stuck: the lines after this one are not waited for
                return
        except OSError:  # a reader gone, a closed descriptor
            return


_deadline = 10.0
_own: dict = {}  # stderr's descriptor -> ours


def forget_own_stderr() -> None:
    """Close the descriptions _own_stderr opened: stderr is about to be another file (a detached launcher's
    log pipe is given up at its end, and a copy of ours would keep the pipe open for good)."""
    import os

    for fd, ours in list(_own.items()):
        if ours != fd:
            os.close(ours)
    _own.clear()


def _own_stderr(fd: int) -> int:
    """A non-blocking description of our own of stderr when it is a terminal or a pipe (opened anew through
    /proc), else stderr itself: a regular file never blocks, and a new description of one would write at
    its own offset over what is there."""
    import os
    import stat

    if fd not in _own:
        _own[fd] = fd
        mode = os.fstat(fd).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
            try:
                _own[fd] = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
            except OSError:
                pass  # (a socket cannot be opened so; a terminal no longer ours): the shared one, as it is
    return _own[fd]
