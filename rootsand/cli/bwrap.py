"""`rootsand bwrap ARGS` and the `rootsand-bwrap` command: bubblewrap's command line, carried out by rootsand.

Lean like cli/entry.py (no typer): parse (config/bwrap.py), plan, resolve against the host, run with the
launcher. What fails before the command runs is a `bwrap: MESSAGE` line with exit status 1, as bubblewrap's
die() (the parser's in bubblewrap's words, the runtime's in rootsand's).
"""

import os
import sys


def _read_fd(fd: int) -> bytes:
    """All of `fd`, as bubblewrap reads --args and the data options' fds (and closes them). OSError."""
    chunks = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        try:
            if fd <= 2:  # stdin read up: /dev/null in its place, so that no descriptor of ours becomes fd 0
                null = os.open("/dev/null", os.O_RDWR)
                os.dup2(null, fd)
                os.close(null)
            else:
                os.close(fd)
        except OSError:
            pass
    return b"".join(chunks)


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError as e:
        from rootsand.config.bwrap import BwrapError

        raise BwrapError(f"Invalid fd: {fd}: {e.strerror}") from None


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _die(message: str, level_prefix: bool) -> int:
    from rootsand.errors import printable

    sys.stdout.flush()
    print(f"{'<3>' if level_prefix else ''}bwrap: {printable(message)}", file=sys.stderr, flush=True)
    return 1


def run(args: list[str], prog: str = "bwrap") -> int:
    from rootsand.config import bwrap

    level_prefix = "--level-prefix" in args[:args.index("--")] if "--" in args else "--level-prefix" in args
    try:
        parsed = bwrap.parse(args, dict(os.environ), _read_fd, _fd_path)
    except bwrap._Help:
        print(bwrap.usage(prog), end="")
        return 0
    except bwrap._Version:
        from rootsand import __version__

        print(f"bubblewrap 0.8.0 (rootsand {__version__})")
        return 0
    except bwrap._Usage:
        print(bwrap.usage(prog), end="", file=sys.stderr)
        return 1
    except bwrap.BwrapError as e:
        return _die(str(e), level_prefix)
    for warning in parsed.warnings:
        print(f"{'<4>' if parsed.level_prefix else ''}bwrap: {warning}", file=sys.stderr, flush=True)
    if parsed.assert_userns_disabled and not _userns_disabled():
        return _die("User namespaces are not disabled: pass --disable-userns", parsed.level_prefix)
    missing = bwrap.sources_missing(parsed)
    if missing:
        return _die(f"Can't find source path {missing}: No such file or directory", parsed.level_prefix)
    from rootsand.runtime import launcher
    from rootsand.security import caps

    cwd = os.getcwd()
    open_fds = [int(fd) for fd in os.listdir("/proc/self/fd")]  # (the listing's own is closed by now)
    open_fds = [fd for fd in open_fds if _is_open(fd)]
    the_plan = bwrap.plan(parsed, os.getuid(), os.getgid(), os.getpid(), cwd, caps.last_cap(),
                          [sys.executable, "-m", "rootsand.cli.bwrap"], open_fds)
    if parsed.die_with_parent:
        from rootsand.linux import libc
        import signal

        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    status = f"/dev/fd/{parsed.json_status_fd}" if parsed.json_status_fd is not None else None
    return launcher.run(the_plan, status, bwrap_status=True, info_fd=parsed.info_fd)


def _userns_disabled() -> bool:
    """--assert-userns-disabled: no user namespace can be made here (a sandbox's --disable-userns), tried in a
    child of ours."""
    from rootsand.linux import libc

    pid = os.fork()
    if pid == 0:
        try:
            libc.unshare(libc.CLONE_NEWUSER)
            os._exit(0)
        except BaseException:  # noqa: BLE001 - a forked child never unwinds into our code
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) != 0


def main(argv: list[str] | None = None) -> None:
    """The `rootsand-bwrap` console script (and `rootsand bwrap`)."""
    import gc

    gc.disable()  # as cli/entry.py: the launcher turns collection back on
    args = sys.argv[1:] if argv is None else argv
    prog = os.path.basename(sys.argv[0]) if argv is None else "rootsand bwrap"
    prog = "rootsand-bwrap" if prog.endswith(".py") else prog  # python3 -m rootsand.cli.bwrap
    from rootsand.errors import RootsandError, say

    try:
        code = run(args, prog)
    except RootsandError as e:  # what failed before the command ran: said as bubblewrap says it, status 1
        from rootsand.errors import printable

        say(f"bwrap: {printable(e.message)}")
        if e.hint:
            say(f"bwrap: hint: {printable(e.hint)}")
        code = 1
    except KeyboardInterrupt:
        code = 128 + 2
    except Exception as e:  # noqa: BLE001 - never a traceback (as cli/main.py)
        from rootsand.errors import printable

        say(f"rootsand: error: internal error: {type(e).__name__}: {printable(str(e))}")
        code = 125
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # /proc/self/exe inside a bwrap sandbox (config/bwrap.py: SELF)
    main()
