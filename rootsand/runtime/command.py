"""The command's process (W), for `run` (forked by PID 1) and `exec` alike: it puts up the command's walls,
in this order, and executes it.

    1. default signals; its own session, on the sandbox's pty when there is one
    2. rlimits; the directory
    3. only stdin, stdout and stderr left open (and the report pipe, closed by execve)
    4. the bounding set; the command's ids (capabilities kept across the switch where it keeps some)
    5. a session keyring of its own
    6. its capabilities, then no_new_privs
    7. Landlock (its rules' paths opened before the switch of ids, while every one is reachable)
    8. seccomp, last: from there on the filter judges every call, execve included
"""

import errno
import os

from rootsand.errors import ExitCode, RootsandError
from rootsand.linux import libc
from rootsand.runtime import channel, init
from rootsand.security import caps, landlock
from rootsand.security.seccomp import compile as seccomp


def switch_ids(uid: int, gid: int) -> None:
    """setresgid and setresuid to `uid`:`gid`, with no supplementary groups where setgroups is allowed."""
    with open("/proc/self/setgroups") as f:
        if f.read().strip() == "allow":
            libc.setgroups_empty()
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def exec_command(plan, report_fd: int, seccomp_filter, pty_slave: int | None) -> int:
    """Put up the walls and execute the plan's command (a Plan: argv, env, chdir, run_uid, run_gid, limits,
    capability_mask, new_session). Never returns: what fails raises a RootsandError (code 127: the command
    is not found, 126: it cannot be executed)."""
    init.reset_signals()
    if plan.new_session:
        os.setsid()
        if pty_slave is not None:
            from rootsand.runtime.terminal import attach_to_slave

            attach_to_slave(pty_slave, every=plan.tty)
    caps.apply_rlimits(plan.limits.rlimits)
    env = plan.env
    if plan.chdir:
        where = _change_directory(plan.chdir, plan.chdir_else)
        if plan.set_pwd:  # bwrap: $PWD names where the command starts
            env = {**env, "PWD": where}
    if plan.block_fd is not None:  # bwrap's --block-fd: the sandbox is up (--info-fd says so); wait to be let go
        try:
            os.read(plan.block_fd, 1)
        except OSError:
            pass
    # Only stdin, stdout and stderr reach the command; the report pipe closes itself on exec.
    low = 3
    for fd in sorted(set(plan.keep_fds) | {report_fd}):  # bwrap: the caller's fds reach the command
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 2**31 - 1)  # close_range(2): every fd, however high

    linked = []
    walls = landlock.prepare(plan.landlock, linked)
    for path in linked:
        channel.send(report_fd, note=f"landlock: {path} is reached through a link inside the sandbox: no rights "
                                     "are granted beneath it")
    uid, gid = plan.run_uid, plan.run_gid
    if plan.userns_layer:
        _userns_layer()
    keep = plan.capability_mask
    caps.drop_bounding_set(keep)
    if keep and uid != 0 and uid != os.getuid():
        libc.prctl(libc.PR_SET_KEEPCAPS, 1)
    try:
        # Also when the ids are ours already: the supplementary groups go (`rootsand exec` joins the sandbox
        # with its caller's, which still open the host's files of those groups)
        switch_ids(uid, gid)
    except OSError as e:
        raise RootsandError(f"cannot run as {uid}:{gid} inside the sandbox: {e.strerror}") from None
    # Keyrings are not namespaced: the caller's session keyring (Kerberos tickets, tokens) is not the
    # command's. seccomp refuses keyctl anyway; this is the wall behind it, and its failure (an outer filter
    # refusing keyctl, an architecture whose number libc.py lacks) leaves the run to that filter.
    try:
        libc.join_new_session_keyring()
    except OSError:
        pass
    if plan.die_with_parent:  # bwrap's --die-with-parent (armed after the change of ids, which clears it)
        libc.prctl(libc.PR_SET_PDEATHSIG, 9)
    caps.set_capabilities(keep, ambient=uid != 0)
    caps.no_new_privs()
    landlock.restrict(walls)
    argv = plan.argv
    channel.send(report_fd, stage="exec")  # the command starts now: a kill from here on is the command's
    if seccomp_filter is not None:
        seccomp.install(seccomp_filter)  # last: from here on the filter judges every call
    for program in plan.seccomp_bpf:  # bwrap's --seccomp and --add-seccomp-fd, in their order
        seccomp.load_bpf(bytes.fromhex(program))
    try:
        try:
            execvpe(argv[0], [plan.argv0] + argv[1:] if plan.argv0 is not None else argv, env)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR) or not plan.argv_fallback:
                raise
            argv = plan.argv_fallback  # the default command: the user's shell is not in this sandbox
            execvpe(argv[0], argv, env)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise RootsandError(f"{argv[0]}: command not found in the sandbox",
                                hint=None if "/" in argv[0] else f"PATH inside is {plan.env.get('PATH', '')}",
                                code=ExitCode.NOT_FOUND) from None
        raise RootsandError(f"{argv[0]}: cannot execute: {e.strerror}", code=ExitCode.NOT_EXECUTABLE) from None
    return ExitCode.FAILURE  # not reached


def _userns_layer() -> None:
    """A user namespace of our own below the sandbox's, our ids mapped to themselves (bwrap's --disable-userns:
    the sandbox's limit of one is used up by it, and no sysctl written from inside raises that)."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        libc.unshare(libc.CLONE_NEWUSER)
        # /proc/self is root's while we are not dumpable (as PID 1 made us): for these writes only
        libc.prctl(libc.PR_SET_DUMPABLE, 1)
        try:
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1\n"),
                               ("gid_map", f"{gid} {gid} 1\n")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        finally:
            libc.prctl(libc.PR_SET_DUMPABLE, 0)
    except OSError as e:
        raise RootsandError(f"--disable-userns: cannot make the command's user namespace: {e.strerror}") from None


def _change_directory(path: str, others: list[str]) -> str:
    """chdir to `path`, else (bwrap, where the current directory is not in the sandbox) to the first of
    `others` that is there; the directory it went to."""
    for where in [path] + list(others):
        try:
            os.chdir(where)
            return where
        except OSError as e:
            if not others:
                raise RootsandError(f"cannot change to directory {path} inside the sandbox: {e.strerror}",
                                    hint="pick another with --chdir") from None
    return os.getcwd()


def execvpe(name: str, argv: list[str], env: dict) -> None:
    """os.execvpe without Python's library: it imports `warnings` to read PATH, and a --rootfs tree (busybox,
    Alpine, another release) has none. A name without a slash is looked up in env's PATH; the first error
    other than "not there" is the one raised, as execvp(3) and os.execvpe do."""
    if "/" in name:
        os.execve(name, argv, env)
    first = None
    for directory in env.get("PATH", os.defpath).split(":"):
        try:
            os.execve(os.path.join(directory or ".", name), argv, env)
        except OSError as e:
            if first is None and e.errno not in (errno.ENOENT, errno.ENOTDIR):
                first = e
            last = e
    raise first or last

