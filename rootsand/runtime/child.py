"""Fork, report, supervise: one way for every forked child of rootsand's (the sandbox's setup processes,
exec's, unshare's, doctor's probes).

The child runs a body and _exits with its status; a failure goes to the parent as one message on the
report pipe (channel.py), whatever raised it. It never returns into the parent's code. The parent waits on
a pidfd, reads the reports meanwhile, and may pass signals on and pump a terminal relay.
"""

import errno
import os
import select
import signal
import sys

from rootsand.config import host
from rootsand.errors import ExitCode, RootsandError
from rootsand.runtime import channel, init


def run_body(body, report_fd: int, debug: bool = False, failed: str | None = "sandbox setup failed",
             where: str | None = "sandbox setup") -> None:
    """Run body() in this forked process and _exit with what it returns (None: 0), reporting a failure on
    `report_fd`: a RootsandError as it is (its code the status), an OSError as "FAILED: path: why", anything
    else as "internal error in WHERE" (a traceback with `debug`). Never returns."""
    code = ExitCode.FAILURE
    try:
        code = body()
        code = ExitCode.OK if code is None else code
    except RootsandError as e:
        channel.send_error(report_fd, e)
        code = e.code
    except OSError as e:  # every failed call names its path (libc's wrappers put it in strerror)
        detail = f"{e.filename}: {e.strerror}" if e.filename else e.strerror or str(e)
        channel.send_error(report_fd, RootsandError(f"{failed}: {detail}" if failed else detail, _hint(e)))
    except BaseException as e:  # noqa: BLE001 - a forked child must never unwind into its parent's code
        detail = _traceback(e) if debug else f"{type(e).__name__}: {e}"
        channel.send_error(report_fd, RootsandError(f"internal error in {where}: {detail}" if where else detail))
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(int(code))


def _traceback(e: BaseException) -> str:
    """The traceback of `e` for --debug, made without importing anything: a forked child may be in the
    sandbox's root by now, whose Python library (a --rootfs tree's, which an earlier run could write) is not
    ours to run (attack 7). traceback's formatting where it is loaded already; else file, line and function
    of each frame."""
    traceback = sys.modules.get("traceback")
    if traceback is None:
        frames, tb = [], e.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            frames.append(f'  File "{code.co_filename}", line {tb.tb_lineno}, in {code.co_name}\n')
            tb = tb.tb_next
        return "Traceback (most recent call last):\n" + "".join(frames) + f"{type(e).__name__}: {e}\n"
    return "".join(traceback.format_exception(e))


def _hint(e: OSError) -> str | None:
    # host is imported with this module, not here: a child may be in the sandbox's mount namespace by now,
    # where the package is hidden, or another one could be planted
    if e.errno == errno.EPERM and host.nesting():
        return ("rootsand runs inside another container or sandbox, whose seccomp filter or capabilities "
                "refuse this call (rootless podman: --security-opt seccomp=unconfined)")
    return None


def start(body, debug: bool = False, failed: str | None = "sandbox setup failed",
          where: str | None = "sandbox setup") -> tuple[int, int]:
    """Fork a child that runs body(REPORT_FD) as run_body does: its pid, and the parent's end of its report
    pipe (close-on-exec: end of file once the child and what it forked have exited or executed)."""
    report_r, report_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(report_r)
        run_body(lambda: body(report_w), report_w, debug, failed, where)
    os.close(report_w)
    return pid, report_r


def wait(pid: int, report_r: int | None = None, relay=None, forward=()) -> int:
    """Wait for our child `pid`, reading its reports from `report_r` (closed here) and pumping `relay` (a
    terminal.Relay) meanwhile, the signals `forward` passed on to it. Its exit status as a shell gives it
    (128+N for death by signal N); the first error it reported is raised instead."""
    reader = channel.Reader(report_r) if report_r is not None else None
    pidfd = os.pidfd_open(pid)
    previous = {sig: signal.signal(sig, lambda s, _frame: _pass_on(pidfd, s)) for sig in forward}
    error = None
    if relay is not None:
        relay.start()
    try:
        while True:
            reads = [pidfd] + ([reader.fd] if reader and reader.fd is not None else [])
            writes = []
            if relay is not None:
                reads += relay.read_fds()
                writes += relay.write_fds()
            try:
                ready, writable, _ = select.select(reads, writes, [])
            except InterruptedError:
                continue
            if reader and reader.fd is not None and reader.fd in ready:
                error = error or _first_error(reader.read(0))
            if relay is not None:
                relay.pump(ready, writable)
            if pidfd in ready:
                break
        for sig, handler in previous.items():  # before the pidfd goes: a handler must never see it closed
            signal.signal(sig, handler)
        previous = {}
        _, status = os.waitpid(pid, 0)
        if relay is not None:
            relay.drain()
        if reader and reader.fd is not None:  # what is still on its way (a grandchild's last words)
            error = error or _first_error(reader.read(0.2))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(pidfd)
        if reader:
            reader.close()
        if relay is not None:
            relay.stop()
    if error:
        raise error
    return init.exit_status(status)


def _pass_on(pidfd: int, signum: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except ProcessLookupError:
        pass  # it has exited: its status says the rest


def _first_error(messages: list[dict]) -> RootsandError | None:
    return next((channel.error_from(m) for m in messages if "error" in m), None)
