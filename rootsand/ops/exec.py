"""`rootsand exec`: run a command inside a running sandbox, as its own command runs. The sandbox is reached
through the namespaces its launcher holds (PID 1 is not dumpable), each checked against the recorded one."""

import os
import signal

from rootsand.errors import RootsandError
from rootsand.linux import procfs
from rootsand.ops import registry

NS_ORDER = ("user", "mount", "pid", "uts", "ipc", "net", "cgroup", "time")  # user first: it grants the rest


def ns_fds(entry: dict) -> dict[str, int]:
    """Open the sandbox's namespaces through the launcher, which holds them (/proc/LAUNCHER/fd/N; PID 1 is
    not dumpable), checking that each is the one recorded."""
    launcher = entry.get("launcher", {})
    held = entry.get("ns_fds") or {}
    fd = registry.pidfd_of(launcher)
    if fd is None or not held:
        if fd is not None:
            os.close(fd)
        raise RootsandError(f"sandbox {entry['name']} is not running any more")
    os.close(fd)
    fds = {}
    try:
        for ns in NS_ORDER:
            if ns not in entry.get("namespaces", {}):
                continue
            if ns not in held:
                raise RootsandError(f"sandbox {entry['name']}: its launcher does not hold its {ns} namespace")
            fds[ns] = os.open(f"/proc/{launcher['pid']}/fd/{int(held[ns])}", os.O_RDONLY | os.O_CLOEXEC)
            if os.fstat(fds[ns]).st_ino != entry["namespaces"][ns]:
                raise RootsandError(f"sandbox {entry['name']}: its {ns} namespace is not the one recorded")
        if procfs.start_time(launcher["pid"]) != launcher.get("start"):
            raise RootsandError(f"sandbox {entry['name']} is not running any more")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def join(fds: dict[str, int]) -> None:
    """setns into each namespace, user first (it grants the capabilities the others need)."""
    from rootsand.linux import libc

    for ns in NS_ORDER:
        if ns in fds:
            libc.setns(fds[ns], libc.NAMESPACE_FLAGS[ns])
            os.close(fds[ns])


def exec_in(name: str, command: list[str], env: list[str], user: str | None, chdir: str | None) -> int:
    """Run COMMAND inside a running sandbox, as its command runs: same namespaces, ids, environment rules,
    capabilities, no_new_privs, rlimits and seccomp filter."""
    from rootsand.config.model import default_command, parse_env_assignment, parse_user
    from rootsand.config.plan import Plan
    from rootsand.security.seccomp import compile as seccomp

    entry = registry.find(name)
    plan = Plan.from_json(entry["plan"])
    env_now = dict(plan.env)
    env_now.update(parse_env_assignment(e) for e in env)
    argv, fallback = (command, []) if command else default_command(os.environ)
    changes = {"tty": False, "argv": argv, "argv_fallback": fallback, "env": env_now, "chdir": chdir or plan.chdir}
    if user:
        asked = parse_user(user)
        if asked.mode == "ids":
            changes.update(run_uid=asked.uid, run_gid=asked.gid)
        elif asked.mode == "root":
            changes.update(run_uid=0, run_gid=0)
    # The same Landlock rules, but a domain of its own beside the command's: with the signal scope, what exec
    # runs could not signal the sandbox's processes (`kill -HUP`), only its own; it is in the sandbox's PID
    # namespace, where nothing else is to be reached.
    changes["landlock"] = plan.landlock.replace(scopes=[s for s in plan.landlock.scopes if s != "signal"])
    plan = plan.replace(**changes)
    seccomp_filter = (seccomp.prepare(plan.seccomp, native_only=not plan.compat_syscalls)
                      if plan.seccomp is not None else None)  # built while site-packages is visible
    fds = ns_fds(entry)
    relay = None
    if plan.new_session and any(os.isatty(fd) for fd in (0, 1, 2)):
        from rootsand.runtime.terminal import Relay

        relay = Relay()
    from rootsand.runtime import child, init

    pid, report_r = child.start(lambda report_w: _exec_child(plan, fds, seccomp_filter, report_w, relay,
                                                             entry.get("cgroup")),
                                failed="cannot join the sandbox", where="rootsand exec")
    for fd in fds.values():
        os.close(fd)
    return child.wait(pid, report_r, relay, forward=init.PASSED_ON_BY_EXEC)  # E1 passes them on to the command


def _exec_child(plan, fds, seccomp_filter, report_w: int, relay, cgroup: str | None) -> int:
    """E1: joins the namespaces, then forks the command so it is inside the PID namespace; passes signals on
    to it and ends with its status."""
    from rootsand.linux import libc
    from rootsand.runtime import child, command, init, terminal

    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    # Not dumpable before it is in the sandbox's namespaces: until the command's execve (which resets
    # it) no sandbox process may ptrace it, read its environment (the caller's) or its memory, in the
    # moments before its capabilities, no_new_privs and seccomp are in place. PID 1 does the same.
    libc.prctl(libc.PR_SET_DUMPABLE, 0)
    if relay is not None:
        relay.console.close()
    if cgroup:  # the sandbox's limits hold for what exec runs too
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
            f.write("0")
    join(fds)
    pty_slave = None
    if relay is not None:
        master, pty_slave = terminal.open_pty(plan.run_uid, plan.run_gid)
        terminal.send_master(relay.console_fd, master)
    command_pid = os.fork()
    if command_pid == 0:
        child.run_body(lambda: command.exec_command(plan, report_w, seccomp_filter, pty_slave), report_w)
    if pty_slave is not None:
        os.close(pty_slave)
    return child.wait(command_pid, forward=init.PASSED_ON_BY_EXEC)
