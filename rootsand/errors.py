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
    """A line of rootsand's on stderr that never raises: the checks after a run go on whatever happened to
    stderr. A reader that went away (`| head`) loses the line; one slower than us is waited for, up to 10 s
    (the sandbox shares the file description and can make it non-blocking)."""
    import os
    import select
    import sys
    import time

    try:
        sys.stderr.flush()
        fd = sys.stderr.fileno()
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's capture), or no stderr at all
        try:
            print(line, file=sys.stderr, flush=True)
        except (OSError, ValueError, AttributeError):
            pass
        return
    data = f"{line}\n".encode("utf-8", "backslashreplace")
    deadline = time.monotonic() + 10
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                return
        except OSError:  # a reader gone, a closed descriptor
            return
