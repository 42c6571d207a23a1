"""Reading a small TOML file that a user wrote (a profile, a seccomp rule file): every failure is one
RootsandError that names the file, and the line where one is known."""

from rootsand.errors import RootsandError

MAX_FILE_SIZE = 1 << 20  # these files are a few hundred bytes; this keeps `-p /dev/zero` from eating memory


def read(path: str, what: str) -> tuple[str, dict]:
    """The text and the parsed table of the TOML file at `path`; `what` ("profile") starts every error."""
    import tomllib

    import os
    import stat

    try:
        # Non-blocking: a FIFO planted where a profile is expected must not hang us; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise RootsandError(f"{what} {path}: cannot read it: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RootsandError(f"{what} {path}: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            raw = f.read(MAX_FILE_SIZE + 1)
    except OSError as e:
        raise RootsandError(f"{what} {path}: cannot read it: {e.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_SIZE:
        raise RootsandError(f"{what} {path}: larger than {MAX_FILE_SIZE} bytes, not a {what}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise RootsandError(f"{what} {path}, line {line}: not UTF-8 text (a binary file?)") from None
    try:
        return text, tomllib.loads(text)
    except ValueError as e:  # TOMLDecodeError, and int() refusing thousands of digits
        raise RootsandError(f"{what} {path}: invalid TOML: {e}") from None
    except RecursionError:
        raise RootsandError(f"{what} {path}: invalid TOML: nested too deeply") from None
