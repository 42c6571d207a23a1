"""Detached sandboxes (`rootsand run -d`): the launcher goes on in the background, what it and the command
write goes to a log of bounded size, and a record says how the sandbox ended.

    rootsand run -d (the caller)
      makes the record (RUNTIME_DIR/detached/NAME.json, ops/registry.py: the name is taken there, at once)
      fork -> D: setsid(); stdin /dev/null; stdout and stderr a pipe that a thread of D copies to the log
      D: the launcher, as in the foreground (launcher.py); "R" on the ready pipe once the command runs
      the caller: at "R" prints the name and exits 0; at an end of file without it (the set-up failed)
      prints the log (the error is there), removes the record and exits with D's status

With --tty the command's terminal is a pty whose output D relays (filtered) into the log, and which
`rootsand attach` takes over while it is attached (terminal.Relay.listen). The record says "running" with
D's pid and start time, then "exited" with the status and the time: a record that says running while its
launcher is gone is a killed launcher's (`ps -a` says "killed").
"""

import os
import sys
import threading
import time

from rootsand.errors import ExitCode, RootsandError, forget_own_stderr, printable, say
from rootsand.linux import procfs
from rootsand.ops import registry

LOG_PART = 4 << 20  # bytes in one part of a log: NAME.log, and NAME.log.1 before it; older output is dropped
READY = b"R"


class Detached:
    """What the launcher of a detached sandbox is told: `started()` once the command runs; `attach_path`, the
    socket of its terminal."""

    def __init__(self, name: str, ready_w: int, own_fds: tuple[int, ...]):
        self.attach_path = registry.detached_path(name, ".attach")
        self._ready_w: int | None = ready_w
        self._own_fds = own_fds  # the log's: not for the sandbox's processes

    def close_in_child(self) -> None:
        """In the launcher's child (the setup process, then PID 1): nothing of the daemon's."""
        for fd in (self._ready_w, *self._own_fds):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def started(self) -> None:
        if self._ready_w is not None:
            try:
                os.write(self._ready_w, READY)
            except OSError:
                pass  # the caller is gone (a ^C): the sandbox runs on all the same
            self.close()

    def close(self) -> None:
        if self._ready_w is not None:
            os.close(self._ready_w)
            self._ready_w = None


def run(plan, json_status: str | None, verbose: bool, debug: bool) -> int:
    """Start the sandbox of `plan` detached; 0 once its command runs (its name printed), else the status of
    the failed start, whose messages are printed."""
    from rootsand.runtime import launcher

    record_path = registry.detached_path(plan.name)
    record = {"name": plan.name, "status": "starting", "created": time.time(), "profile": plan.profile,
              "net": plan.network.mode, "command": plan.argv, "tty": plan.tty,
              "caller": {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}}  # starting while it runs
    if not registry.create(record_path, record):  # whole or not at all: a caller killed now leaves a record
        raise RootsandError(f"the name {plan.name} is kept by a detached sandbox",  # that ps -a and rm see
                            hint=f"'rootsand ps -a' shows it; 'rootsand rm {plan.name}' removes it")
    log_path = registry.detached_path(plan.name, ".log")
    for stale in (log_path, log_path + ".1", registry.detached_path(plan.name, ".attach")):
        registry.forget(stale)  # a killed caller's, from before its record was removed
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # D
        code = ExitCode.FAILURE
        try:
            os.close(ready_r)
            code = _daemon(plan, json_status, verbose, debug, record, record_path, log_path, ready_w, launcher)
        finally:
            os._exit(code)
    os.close(ready_w)
    try:
        ready = os.read(ready_r, 1) == READY
    finally:
        os.close(ready_r)
    if ready:
        print(plan.name)
        return ExitCode.OK
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else ExitCode.FAILURE
    for line in read_log(log_path).decode(errors="replace").splitlines():
        say(printable(line))  # what went wrong, as a run in the foreground would have said it
    for path in (log_path, log_path + ".1", record_path):
        registry.forget(path)  # it never ran: nothing to keep (the record last: it holds the name, and the log's)
    return code


def _daemon(plan, json_status, verbose, debug, record, record_path, log_path, ready_w, launcher) -> int:
    os.setsid()  # no terminal of the caller's, no signal of its session (a ^C, a hang-up)
    forget_own_stderr()  # the caller's own description of its stderr (errors.say): ours go to the log
    os.closerange(3, ready_w)  # nothing else of the caller's (a harness's pipe, a lock, a terminal on fd 9)
    os.closerange(ready_w + 1, 2**31 - 1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    log = Log(log_path)
    os.dup2(out_w, 1)  # (inheritable: the sandbox's processes write here)
    os.dup2(out_w, 2)
    os.close(out_w)
    copier = threading.Thread(target=log.copy, args=(out_r,), name="rootsand-log", daemon=True)
    copier.start()  # only os.read and os.write: the processes forked meanwhile inherit no lock of it
    me = {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}
    registry.publish(record_path, {**record, "status": "running", "launcher": me, "log": log_path})
    detached = Detached(plan.name, ready_w, (out_r, log.fd, null))
    code = ExitCode.FAILURE
    try:
        code = launcher.run(plan, json_status, verbose, debug, detached)
    except RootsandError as e:
        for line in e.lines():
            say(line)
        code = e.code
    except Exception as e:  # noqa: BLE001 - as cli/main.py: a line in the log, never a traceback unless asked
        if debug:
            import traceback

            traceback.print_exc()
        say(f"rootsand: error: internal error: {type(e).__name__}: {printable(str(e))}")
        code = ExitCode.FAILURE
    finally:
        detached.close()
        registry.forget(detached.attach_path)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            pass
        forget_own_stderr()  # (errors.say's own description of the pipe)
        os.dup2(null, 1)  # our copies of the pipe gone, the copier sees its end once the sandbox's are too
        os.dup2(null, 2)
        copier.join(10)
        registry.publish(record_path, {**record, "status": "exited", "launcher": me, "log": log_path,
                                       "exit_code": code, "ended": time.time()})
    return code


class Log:
    """A log of bounded size: NAME.log until it holds LOG_PART bytes, then it becomes NAME.log.1 (the one
    before is dropped) and a new NAME.log begins."""

    def __init__(self, path: str):
        self.path = path
        self.fd: int | None = self._open()
        self.size = 0

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def copy(self, source: int) -> None:
        """Until every writer of `source` is gone. Whatever fails on the log's side (a full file system, a
        part removed meanwhile), the pipe is still drained: what does not fit is lost, the sandbox goes on."""
        while True:
            try:
                data = os.read(source, 1 << 16)
            except OSError:
                break
            if not data:
                break
            try:
                self._write(data)
            except OSError:
                pass
        os.close(source)
        if self.fd is not None:
            os.close(self.fd)

    def _write(self, data: bytes) -> None:
        if self.size and self.size + len(data) > LOG_PART or self.fd is None:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
                try:
                    os.rename(self.path, self.path + ".1")
                except FileNotFoundError:
                    pass
            self.fd, self.size = self._open(), 0
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)


def read_log(path: str) -> bytes:
    """Both parts of a log, the older first; b"" when there is none."""
    data = b""
    for part in (path + ".1", path):
        try:
            fd = os.open(part, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            while chunk := os.read(fd, 1 << 20):
                data += chunk
        finally:
            os.close(fd)
    return data
