"""The sandbox's side of setup.

    C   forked by the launcher: unshares the namespaces, waits for its id maps, forks PID 1, and exits once
        the launcher holds the namespaces (PID 1 is then the launcher's child: it is a child subreaper).
    P1  PID 1: becomes root inside, builds the sandbox (mounts, hostname, loopback), waits until C is gone
        and ties itself to the launcher, forks the command process and then reaps (init.py).
    W   the command process (command.py): switches user, directory and environment, closes stray fds, execs.

Each function here runs in a forked child and ends with os._exit: nothing ever returns into the
launcher's code (child.run_body). Failures go to the launcher through the report pipe (channel.py).
"""

import os
import select
import signal
import sys

from rootsand.errors import ExitCode, RootsandError, printable
from rootsand.linux import libc, procfs
from rootsand.runtime import channel, child, init


def child_main(runtime, launcher_pid: int, go_fd: int, report_fd: int) -> None:
    child.run_body(lambda: _child(runtime, runtime.plan, launcher_pid, go_fd, report_fd), report_fd, runtime.debug)


def _child(runtime, plan, launcher_pid: int, go_fd: int, report_fd: int) -> int:
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher_pid:  # the launcher died before PDEATHSIG was armed
        return ExitCode.FAILURE
    if runtime.console_launcher_fd is not None:
        os.close(runtime.console_launcher_fd)
    runtime.net.after_fork(in_child=True)
    if plan.new_session:
        # Out of the terminal's foreground group: a ^C reaches the launcher only, which passes it on once.
        os.setpgid(0, 0)
    if runtime.cgroup_dir:  # before unshare, so the sandbox's cgroup namespace is rooted in its own cgroup
        with open(os.path.join(runtime.cgroup_dir, "cgroup.procs"), "w") as f:
            f.write("0")
    flags = 0
    for ns in plan.namespaces:
        flags |= libc.NAMESPACE_FLAGS[ns]
    flags &= ~runtime.net.join()  # a pod's member joins its user namespace instead of making one
    try:
        libc.unshare(flags)
    except OSError as e:
        raise RootsandError(f"cannot create the sandbox's namespaces: unshare: {os.strerror(e.errno)}",
                            hint=procfs.userns_hint()) from None
    problem = runtime.net.unshared()
    if problem:
        channel.send(report_fd, note=problem)
    if plan.time_offsets:
        # Only before the first process enters the new time namespace: PID 1, forked below.
        with open("/proc/self/timens_offsets", "w") as f:
            f.write("".join(f"{clock} {seconds} 0\n" for clock, seconds in plan.time_offsets.items()))
    channel.send(report_fd, stage="unshared")
    # What PID 1 and the command need is imported and the filter built while the launcher runs newuidmap
    # and newgidmap, so the two overlap (~10 ms off each start); PID 1 and the command inherit them, and
    # they need site-packages, which pivot_root hides later.
    from rootsand.net import network  # noqa: F401 - for PID 1
    from rootsand.runtime import command  # noqa: F401 - for PID 1 and the command
    from rootsand.runtime.fs import build  # noqa: F401 - for PID 1
    from rootsand.security.seccomp import compile as seccomp

    libc.prepare()
    seccomp_filter = (seccomp.prepare(plan.seccomp, native_only=not plan.compat_syscalls)
                      if plan.seccomp is not None else None)
    if os.read(go_fd, 1) != b"G":  # the launcher could not write the maps; it reports why
        return ExitCode.FAILURE
    if runtime.net.configure():
        channel.send(report_fd, stage="network")

    # PID 1 is tied to us (PDEATHSIG) while it builds the sandbox, then to the launcher: it says "B" when
    # built and drops its PDEATHSIG, we exit, and it waits for that on our pidfd before arming it again
    # (the launcher is a child subreaper, so it is then the launcher's child). "R" says we exited as
    # planned, not killed.
    me = os.pidfd_open(os.getpid())
    built_r, built_w = os.pipe2(os.O_CLOEXEC)
    released_r, released_w = os.pipe2(os.O_CLOEXEC)
    pid1 = os.fork()
    if pid1 == 0:
        os.close(released_w)
        os.close(built_r)
        os.close(go_fd)
        ties = (me, built_w, released_r, runtime.alive_fd)
        child.run_body(lambda: _pid1(runtime, plan, ties, report_fd, seccomp_filter), report_fd, runtime.debug)
    for fd in (released_r, built_w, me, runtime.alive_fd):
        os.close(fd)
    if runtime.console_fd is not None:
        os.close(runtime.console_fd)  # PID 1 has it
    channel.send(report_fd, pid1=pid1)
    os.close(report_fd)
    os.read(go_fd, 1)  # end of file: the launcher holds the namespaces (or is gone)
    if os.read(built_r, 1) == b"B":  # else PID 1 failed, and said why
        os.write(released_w, b"R")
    return ExitCode.OK


def _pid1(runtime, plan, ties: tuple[int, int, int, int], report_fd: int, seccomp_filter) -> int:
    from rootsand.runtime import command
    from rootsand.security import caps

    if plan.root_mapped:
        command.switch_ids(0, 0)
    if (plan.setup_uid, plan.setup_gid) != (0, 0):
        # Inside 0 is a subordinate id here (keep-id maps): what setup creates in the user's directories
        # (mount points, protected paths' placeholders, overlay work dirs) must belong to the user.
        libc.setfsuid(plan.setup_uid)
        libc.setfsgid(plan.setup_gid)
        everything = (1 << (caps.last_cap() + 1)) - 1
        libc.capset(everything, everything, 0)  # a non-zero fsuid drops the file capabilities: take them back
    # A change of ids clears PDEATHSIG, so arm it only now; then make sure C did not die before that.
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if select.select([ties[0]], [], [], 0)[0]:
        return ExitCode.FAILURE

    host_pty = None
    if runtime.console_fd is not None and not any(m.type == "dev" and m.dst == "/dev" for m in runtime.steps):
        host_pty = os.openpty()  # no devpts of its own inside: the host's, taken while it is reachable
    for warning in _build(runtime, plan):
        channel.send(report_fd, note=warning)
    libc.prctl(libc.PR_SET_DUMPABLE, 0)  # the command runs as the same uid: it must not ptrace PID 1
    pty_slave = None
    if runtime.console_fd is not None:
        from rootsand.runtime import terminal  # only with a terminal: it brings threads and sockets

        master, pty_slave = host_pty or terminal.open_pty(plan.run_uid, plan.run_gid)
        terminal.send_master(runtime.console_fd, master)
    if not _tie_to_launcher(*ties, report_fd):
        return ExitCode.FAILURE

    held = [_lock(path) for path in plan.lock_files]  # noqa: F841 - held by PID 1 while the sandbox runs
    if plan.as_pid_1:  # bwrap's --as-pid-1: the command is PID 1 itself, with no reaper in front of it
        command.exec_command(plan, report_fd, seccomp_filter, pty_slave)
    command_pid = os.fork()
    if command_pid == 0:
        child.run_body(lambda: command.exec_command(plan, report_fd, seccomp_filter, pty_slave), report_fd,
                       runtime.debug)
    os.close(report_fd)
    if pty_slave is not None:
        os.close(pty_slave)
    _stdio_to_null()  # PID 1 says nothing more; it must not hold the user's terminal
    # PID 1 only reaps and passes signals on from now: it keeps CAP_KILL (the command may run as
    # another id) and nothing else.
    caps.drop_bounding_set(1 << caps.CAP_KILL)
    libc.capset(1 << caps.CAP_KILL, 1 << caps.CAP_KILL, 0)
    return init.reap_until(command_pid)


def _tie_to_launcher(setup_pidfd: int, built_fd: int, released_fd: int, alive_fd: int, report_fd: int) -> bool:
    """From C to the launcher: let C go; once it has exited (as planned: its "R") arm PDEATHSIG again and
    wait for the launcher's "G", which it sends only after seeing that we are its child. A launcher that
    dies before that sends nothing (end of file), and one that dies after takes us with it: we cannot
    tell from here (our parent is outside our PID namespace), and a launcher dying while C exits would
    leave us to init. False: stop."""
    libc.prctl(libc.PR_SET_PDEATHSIG, 0)  # C's planned exit must not kill us
    os.write(built_fd, b"B")
    os.close(built_fd)
    select.select([setup_pidfd], [], [])  # readable once C has exited, and so after we were reparented
    planned = os.read(released_fd, 1) == b"R"
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    go = False
    if planned:
        channel.send(report_fd, stage="tied")
        go = os.read(alive_fd, 1) == b"G"
    for fd in (setup_pidfd, released_fd, alive_fd):
        os.close(fd)
    return go


def _build(runtime, plan) -> list[str]:
    """The sandbox's own view of the system: its file system and /proc, hostname, loopback. What the user
    must be told (warnings)."""
    if "uts" in plan.namespaces and plan.hostname:  # (bwrap without --hostname: the host's name, as it was)
        libc.sethostname(plan.hostname)
    if "net" in plan.namespaces:
        from rootsand.net import network

        network.loopback_up()
    runtime.net.check(runtime.debug)
    from rootsand.runtime.fs.build import FileSystem

    fs = FileSystem(runtime.steps, runtime.rootfs, (plan.run_uid, plan.run_gid), plan.etc_files,
                           sysctls=plan.sysctls, protected=plan.protected, home_guards=plan.home_guards,
                           workdir=plan.chdir, hidden=plan.hidden)
    fs.build()
    if runtime.verbose:
        for inside, made in fs.protected_paths:
            print(f"rootsand: protected: {printable(inside)} (read-only" + (", made for the run, removed at exit)"
                                                                              if made else ")"), file=sys.stderr, flush=True)
        for inside in fs.hidden_paths:
            print(f"rootsand: hidden: {printable(inside)} (reads as empty: security.hide)", file=sys.stderr, flush=True)
        for note in fs.notes:
            print(f"rootsand: {printable(note)}", file=sys.stderr, flush=True)
        for failure in fs.sysctl_failures:
            print(f"rootsand: not set, the seccomp rules and rlimits stand alone: {printable(failure)}", file=sys.stderr,
                  flush=True)
    return fs.warnings


def _lock(path: str) -> int:
    """bwrap's --lock-file: a read lock on `path` (inside), held by PID 1 until the sandbox ends."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        fcntl.lockf(fd, fcntl.LOCK_SH)
    except OSError as e:
        raise RootsandError(f"--lock-file {path}: {e.strerror}") from None
    return fd


def _stdio_to_null() -> None:
    try:
        null = os.open("/dev/null", os.O_RDWR)
    except OSError:
        null = None  # no /dev in this sandbox: close them instead
    for fd in (0, 1, 2):
        if null is None:
            os.close(fd)
        else:
            os.dup2(null, fd)
    if null is not None and null > 2:
        os.close(null)
