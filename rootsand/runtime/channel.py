"""The report pipe: the sandbox's processes tell the launcher how setup went, one JSON line per message.

Each message is one write smaller than PIPE_BUF, so messages from several processes never interleave.
The pipe is close-on-exec: the launcher sees end-of-file once the command has been executed and the
setup processes have closed their copies, or once they have all died.
"""

import json
import os
import select

from rootsand.errors import ExitCode, RootsandError


def send(fd: int, **message) -> None:
    # Under PIPE_BUF (4096) so the write is atomic: shorten long texts (a long path, a traceback), not the line.
    message = {k: v[:1500] + "..." if isinstance(v, str) and len(v) > 1500 else v for k, v in message.items()}
    data = (json.dumps(message) + "\n").encode()
    try:
        os.write(fd, data)
    except OSError:
        pass  # the launcher is gone; its death kills us soon


def send_error(fd: int, error: RootsandError) -> None:
    send(fd, error=error.message, hint=error.hint, code=error.code)


class Reader:
    """Reads messages from the launcher's end of the pipe without ever blocking past a deadline."""

    def __init__(self, fd: int):
        self.fd: int | None = fd
        self._buffer = b""

    def read(self, timeout: float | None) -> list[dict]:
        """Messages that arrived within `timeout` seconds (None: wait); [] when none came or on end-of-file."""
        if self.fd is None:
            return []
        ready = select.select([self.fd], [], [], timeout)[0]
        if not ready:
            return []
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.close()
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        return [json.loads(line) for line in lines if line]

    def close(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)


def error_from(message: dict) -> RootsandError:
    return RootsandError(message["error"], message.get("hint"), message.get("code", ExitCode.FAILURE))
