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
    import sys
    import time

    from rootsand import STARTED

    print(f"rootsand: {time.monotonic() - STARTED:8.4f}s {printable(message)}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    import sys

    print(f"rootsand: warning: {printable(message)}", file=sys.stderr, flush=True)
