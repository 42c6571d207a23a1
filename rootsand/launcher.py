"""The host side of a sandbox: fork, write the id maps, forward signals, enforce the timeout, report.

    launcher L (host, your uid)
      fork -> C: unshare(USER|...); reports "unshared"; waits for "G"
      L: newuidmap/newgidmap C (or writes a single-id map); "G"
      C: fork -> P1 (PID 1 inside); reports P1's pid; waits for P1
      L: forwards signals to P1, waits for C, exits with the command's status

The report pipe (channel.py) tells L about failures inside; PDEATHSIG ties C to L and P1 to C, and
everything in the PID namespace dies with P1, so a killed launcher leaves nothing behind.
"""

import errno
import ipaddress
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time

from rootsand import channel, host, idmap, init, libc, network, security
from rootsand.errors import ExitCode, RootsandError, warn
from rootsand.spec import SandboxSpec

# A signal that arrives before PID 1 exists ends the launcher; later ones are passed on to the command.
TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def plan_ids(spec: SandboxSpec) -> idmap.IdPlan:
    """Decide the id maps from this host's /etc/subuid, /etc/subgid and helpers; set the command's ids."""
    uid, gid = os.getuid(), os.getgid()
    name = host.user_name(uid)
    keep_id = spec.user.mode == "keep-id"
    plan = idmap.plan(uid, gid,
                      idmap.read_subid("/etc/subuid", name, uid), idmap.read_subid("/etc/subgid", name, uid),
                      host.find_helper("newuidmap"), host.find_helper("newgidmap"),
                      keep_id=keep_id, single=spec.idmap == "single")
    if spec.user.mode == "root":
        spec.run_ids = (0, 0) if plan.root_mapped else (uid, gid)
    elif keep_id:
        spec.run_ids = (uid, gid)
    else:
        spec.run_ids = (spec.user.uid, spec.user.gid)
    run_uid, run_gid = spec.run_ids
    if not idmap.mapped(plan.uid_lines, run_uid) or not idmap.mapped(plan.gid_lines, run_gid):
        top = max(inside + count for inside, _, count in plan.uid_lines) - 1
        raise RootsandError(f"user {run_uid}:{run_gid} is not mapped in the sandbox (ids 0-{top} are)",
                            hint="use --user root, keep-id or an id in that range")
    return plan


def run(spec: SandboxSpec) -> int:
    spec.name = spec.name or f"sandbox-{os.getpid()}"
    _check_host_paths(spec)
    plan = plan_ids(spec)
    if spec.net_mode == "slirp":
        try:
            with open("/etc/resolv.conf") as f:
                host_resolv = f.read()
        except OSError:
            host_resolv = ""
        spec.resolv_conf = network.resolv_conf(host_resolv, spec.dns)
    for note in ([plan.note] if plan.note else []) + spec.notes:
        warn(note)
    _plan_security(spec)
    try:
        return Launcher(spec, plan).run()
    finally:
        if spec.cgroup_dir:  # also when the launcher failed before its own cleanup could run
            security.remove_cgroup(spec.cgroup_dir)


def _plan_security(spec: SandboxSpec) -> None:
    """Read what the command's protection needs from the host, now, before any of it is reachable inside."""
    from rootsand import seccomp

    if spec.seccomp == "none":
        warn('the seccomp filter is off (security.seccomp = "none"): for debugging only')
    else:
        _check_rule_file_is_out_of_reach(spec)
    cgroup = security.delegated_cgroup()
    spec.limits = security.plan_limits(spec.memory, spec.pids, spec.cpu, spec.rlimits,
                                       cgroup[1] if cgroup else set())
    if spec.seccomp != "none":
        # Memory that RLIMIT_AS does not count (memfd, SysV shm) is refused where no memory cgroup counts it.
        uncounted = spec.memory is not None and "memory.max" not in spec.limits.cgroup
        from rootsand.inside import SHM_MAX

        spec.seccomp_rules = seccomp.rules_for(
            spec.seccomp, spec.nested_userns, net_mode=spec.net_mode, setuid_bits=spec.setuid_bits,
            socket_families=spec.socket_families, limit_memfd=uncounted,
            shm_max=min(SHM_MAX, spec.memory) if uncounted else None)
    if spec.limits.cgroup:
        spec.cgroup_dir = security.make_cgroup(cgroup[0], f"rootsand-{os.getpid()}", spec.limits.cgroup)
    if spec.limits.not_enforced:
        warn("; ".join(spec.limits.not_enforced))
    if spec.verbose:
        for line in security.describe_limits(spec.limits, spec.memory):
            print(f"rootsand: limits: {line}", file=sys.stderr, flush=True)


def writable_dirs(spec: SandboxSpec) -> list[str]:
    """The host directories this sandbox can write (and so a sandbox like it may have planted links in):
    the current directory, read-write binds, persistent overlay upper dirs."""
    tops = [spec.cwd] if spec.cwd != "/" else []
    for m in spec.mounts:
        if m.type in ("bind", "dev-bind") and m.src:
            tops.append(os.path.realpath(m.src))
        if m.type == "overlay" and m.upper != "tmpfs":
            tops.append(os.path.realpath(m.upper))
    return [t for t in tops if t != "/"]


def _check_host_paths(spec: SandboxSpec) -> None:
    """Resolve every host path the sandbox is built from, once, refusing links a sandbox could have planted
    (hostpaths.py); the sandbox then opens the resolved paths without following any link."""
    import dataclasses

    from rootsand.hostpaths import resolve_source

    tops = writable_dirs(spec)
    if spec.rootfs:
        spec.rootfs = resolve_source(spec.rootfs, tops, "--rootfs")
    mounts = []
    for index, m in enumerate(spec.mounts):
        what = f"mount {index + 1} ({m.type} on {m.dst})"
        if m.type in ("bind", "ro-bind", "dev-bind"):
            m = dataclasses.replace(m, src=resolve_source(m.src, tops, what))
        elif m.type == "overlay":
            upper = m.upper if m.upper == "tmpfs" else resolve_source(m.upper, tops, what + " upper")
            m = dataclasses.replace(m, lower=[resolve_source(p, tops, what) for p in m.lower], upper=upper)
        mounts.append(m)
    spec.mounts = mounts


def _check_rule_file_is_out_of_reach(spec: SandboxSpec) -> None:
    """A rule file the sandbox can write could be loosened by the code it is meant to contain."""
    if spec.seccomp == "default":
        return
    path = os.path.realpath(spec.seccomp)
    for m in spec.mounts:
        writable = [m.src] if m.type in ("bind", "dev-bind") else []
        if m.type == "overlay" and m.upper != "tmpfs":
            writable.append(m.upper)
        for src in writable:
            top = os.path.realpath(src)
            if path == top or path.startswith(top.rstrip("/") + "/"):
                raise RootsandError(f"the seccomp rule file {spec.seccomp} is inside {src}, which the sandbox can write",
                                    hint="keep rule files where the sandbox cannot write, e.g. ~/.config/rootsand/")


class Launcher:
    def __init__(self, spec: SandboxSpec, plan: idmap.IdPlan):
        self.spec = spec
        self.plan = plan
        self.child: int | None = None  # C, as the host sees it
        self.pid1: int | None = None  # the sandbox's PID 1, as the host sees it
        self.pid1_fd: int | None = None  # a pidfd of PID 1: signals never reach a process that reused its pid
        self.interrupted: int | None = None  # a terminating signal that came before PID 1 existed
        self.error: RootsandError | None = None
        self.slirp: network.Slirp | None = None
        self.relay = None
        self.status_fd: int | None = None
        self._status_done = False
        self.status_warning: str | None = None
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        if self.spec.verbose:
            print(f"rootsand: {time.monotonic() - self.started:8.4f}s {message}", file=sys.stderr, flush=True)

    def say(self, lines: list[str]) -> None:
        """Lines for the user: on a terminal that is no longer raw."""
        if self.relay:
            self.relay.stop()
        try:
            for line in lines:
                print(line, file=sys.stderr, flush=True)
        except OSError:
            pass  # nobody reads our stderr any more: the exit status still tells

    def run(self) -> int:
        if self.spec.json_status:
            self.status_fd = _open_status_file(self.spec.json_status, writable_dirs(self.spec))
        if self.spec.new_session and any(os.isatty(fd) for fd in (0, 1, 2)):
            from rootsand.terminal import Relay

            self.relay = Relay()
            self.spec.console_fd, self.spec.console_launcher_fd = self.relay.console_fd, self.relay.console.fileno()
        go_r, go_w = os.pipe()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        # Block the forwarded signals across fork: the children inherit the mask and unblock when ready.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, init.FORWARDED)
        launcher_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(report_r)
            if self.status_fd is not None:
                os.close(self.status_fd)
            from rootsand import inside
            inside.child_main(self.spec, self.plan, launcher_pid, go_r, report_w)
        self.child = pid
        if self.relay:
            self.relay.start()
        os.close(go_r)
        os.close(report_w)
        self._reports = channel.Reader(report_r)
        self._go_w: int | None = go_w
        for sig in init.FORWARDED:
            signal.signal(sig, self._on_signal)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        self.log(f"forked setup process {pid}")
        code = ExitCode.FAILURE
        try:
            code = self._supervise()
            return code
        finally:
            # Each step on its own: none may skip the next (the terminal above all).
            try:
                try:
                    self._write_status(code)  # once, whatever ended the run
                finally:
                    # No handler may run in the middle of cleaning up.
                    signal.pthread_sigmask(signal.SIG_BLOCK, init.FORWARDED)
                    self._close_go()
                    self._reports.close()
                    self._kill_and_reap()
            finally:
                try:
                    if self.slirp:
                        self.slirp.stop()
                finally:
                    if self.relay:
                        self.relay.stop()
                    if self.status_fd is not None:
                        os.close(self.status_fd)
                    if self.status_warning:
                        warn(self.status_warning)

    def _close_go(self) -> None:
        if self._go_w is not None:
            os.close(self._go_w)
            self._go_w = None

    def _supervise(self) -> int:
        deadline = self.started + self.spec.timeout if self.spec.timeout else None
        pidfd = os.pidfd_open(self.child)
        try:
            # 1. The child has unshared: write its maps, then let it go on.
            while not self._handle(self._reports.read(self._wait(deadline))):
                if self._reports.fd is None or self._timed_out(deadline) or self.interrupted:
                    return self._finish(pidfd, deadline)
            self._write_maps()
            self.log("id maps written")
            if self.spec.net_mode == "slirp":
                self._start_slirp()
            if self.interrupted:
                return 128 + self.interrupted
            try:
                os.write(self._go_w, b"G")
            except BrokenPipeError:
                pass  # the child failed while we wrote its maps: _finish reports why
            self._close_go()
            # 2. Until the command runs (or setup fails), then until the sandbox ends.
            return self._finish(pidfd, deadline)
        finally:
            os.close(pidfd)

    def _finish(self, pidfd: int, deadline: float | None) -> int:
        while True:
            if self.interrupted:
                return 128 + self.interrupted
            reads = [pidfd] if self._reports.fd is None else [pidfd, self._reports.fd]
            writes = []
            if self.relay:
                reads += self.relay.read_fds()
                writes += self.relay.write_fds()
            ready, writable, _ = select.select(reads, writes, [], self._wait(deadline))
            if self._reports.fd in ready:
                self._handle(self._reports.read(0))
            if self.relay:
                self.relay.pump(ready, writable)
            if pidfd in ready:
                break
            if self._timed_out(deadline):
                self.log("timeout: killing the sandbox")
                self._kill_and_reap()
                self.say([f"rootsand: error: the command ran out of time ({self.spec.timeout:g}s): sandbox killed"])
                return ExitCode.TIMEOUT
        _, status = os.waitpid(self.child, 0)
        self.child = None
        self._forget_pid1()  # C reaped it: its pid may be anyone's now
        if self.relay:
            self.relay.drain()
        # Every report was written before C exited, but P1 and the command may close their ends a bit later.
        end = time.monotonic() + 1
        while self._reports.fd is not None and time.monotonic() < end:
            self._handle(self._reports.read(max(0.0, end - time.monotonic())))
        code = init.exit_status(status)
        if self.error:
            self.say(self.error.lines())
            code = self.error.code
        self.log(f"sandbox ended with status {code}")
        return code

    def _handle(self, messages: list[dict]) -> bool:
        """Act on reports from inside; True once the child reports it has unshared."""
        unshared = False
        for m in messages:
            if "error" in m and self.error is None:
                self.error = channel.error_from(m)
            elif m.get("stage") == "unshared":
                self.log("namespaces created")
                unshared = True
            elif "pid1" in m:
                self.pid1 = m["pid1"]
                self.pid1_fd = _pidfd_of_child(self.pid1, self.child)
                self.log(f"PID 1 is {self.pid1} on the host")
                self._write_status(None)
        return unshared

    def _write_maps(self) -> None:
        plan, pid = self.plan, self.child
        if plan.uid_helper:
            for helper, lines in ((plan.uid_helper, plan.uid_lines), (plan.gid_helper, plan.gid_lines)):
                _run_helper(idmap.helper_args(helper, pid, lines))
            return
        try:
            if plan.deny_setgroups:
                _write_proc(f"/proc/{pid}/setgroups", "deny")
            _write_proc(f"/proc/{pid}/uid_map", idmap.map_text(plan.uid_lines))
            _write_proc(f"/proc/{pid}/gid_map", idmap.map_text(plan.gid_lines))
        except OSError as e:
            raise RootsandError(f"cannot write the sandbox's id map: {e}", hint=host.userns_hint()) from None

    def _start_slirp(self) -> None:
        binary = host.find_helper("slirp4netns")
        if not binary:
            raise RootsandError("--net slirp: slirp4netns not found", hint="install the 'slirp4netns' package")
        api_socket = None
        if self.spec.publish:
            directory = host.runtime_dir()
            host.remove_stale(directory, "slirp")
            api_socket = os.path.join(directory, f"slirp-{os.getpid()}.sock")
        if not self.spec.allow_host_loopback and any(
                f.proto == "udp" and ipaddress.ip_address(f.host_addr).is_loopback for f in self.spec.publish):
            warn("slirp4netns drops a sandbox's UDP replies to the host's loopback unless --allow-host-loopback "
                 "is given (podman#4586): the published UDP port only receives")
        self.slirp = network.Slirp(binary, self.child, self.spec.allow_host_loopback, api_socket)
        self.slirp.publish(self.spec.publish)
        self.slirp.forget_api_socket()
        self.log("slirp4netns ready" + (f", published {', '.join(map(str, self.spec.publish))}"
                                        if self.spec.publish else ""))

    def _on_signal(self, signum: int, _frame) -> None:
        if signum == signal.SIGWINCH and self.relay:
            self.relay.copy_window_size()  # the pty tells the command itself
        elif self.pid1_fd is not None:
            try:
                signal.pidfd_send_signal(self.pid1_fd, signum)
            except OSError:
                pass  # PID 1 is gone (or going): nothing left to tell
        elif self.pid1 is None and signum in TERMINATING:
            self.interrupted = signum  # setup is not done: the loops see it and end the sandbox

    def _forget_pid1(self) -> None:
        fd, self.pid1_fd = self.pid1_fd, None  # first, so a signal handler never sees a closed fd
        if fd is not None:
            os.close(fd)

    def _kill_and_reap(self) -> None:
        """SIGKILL PID 1 (which takes the whole PID namespace with it) and the setup child; reap them."""
        if self.pid1_fd is not None:
            try:
                signal.pidfd_send_signal(self.pid1_fd, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.child is not None:
            try:
                os.kill(self.child, signal.SIGKILL)  # our own unreaped child: its pid cannot be reused
            except ProcessLookupError:
                pass
            os.waitpid(self.child, 0)
            self.child = None
        self._forget_pid1()

    def _wait(self, deadline: float | None) -> float:
        """How long a loop may sleep: until the deadline, and briefly, so a recorded signal is seen soon."""
        left = self._left(deadline)
        return 0.1 if left is None else min(left, 0.1)

    def _left(self, deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def _timed_out(self, deadline: float | None) -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def _write_status(self, code: int | None) -> None:
        """--json-status: a first line with PID 1 and the namespaces, a last line with the exit code. Never
        blocks: a reader that does not keep up loses the line, with one warning."""
        if self.status_fd is None or (code is not None and self._status_done):
            return
        self._status_done = code is not None
        if code is None:
            namespaces = {}
            for ns, link in libc.NAMESPACE_LINKS.items():
                try:
                    namespaces[ns] = os.stat(f"/proc/{self.pid1}/ns/{link}").st_ino
                except OSError:
                    pass
            line = {"child-pid": self.pid1, "name": self.spec.name, "namespaces": namespaces}
        else:
            line = {"exit-code": code}
        data = (json.dumps(line) + "\n").encode()
        try:
            if os.write(self.status_fd, data) != len(data):
                raise BlockingIOError(errno.EAGAIN, "the reader is not keeping up")
        except OSError as e:
            fd, self.status_fd = self.status_fd, None
            os.close(fd)
            # Said at the end: the terminal may be raw now.
            self.status_warning = f"--json-status: cannot write {self.spec.json_status}: {e.strerror or e}"


def _pidfd_of_child(pid: int, parent: int) -> int | None:
    """A pidfd for `pid` if it is still `parent`'s child (so not a stranger that reused a reaped pid)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        ppid = None
    if ppid != parent:
        os.close(fd)
        return None
    return fd


# Paths that name one of the caller's own descriptors: links no sandbox can plant, followed as asked.
_FD_PATHS = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/self/fd/\d+")


def _open_status_file(path: str, writable: list[str]) -> int:
    """Opened before anything runs, non-blocking, and never through a link a sandbox could have planted: a
    sandbox that can write the directory must not turn the next run's status file into a link to one of
    the user's files, nor into a FIFO that stalls the launcher."""
    from rootsand.hostpaths import open_nofollow, resolve_source

    absolute = os.path.abspath(path)
    try:
        if _FD_PATHS.fullmatch(absolute):
            fd = os.open(absolute, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        else:
            parent, name = os.path.split(absolute)
            resolved = os.path.join(resolve_source(parent, writable, "--json-status"), name)
            fd = open_nofollow(resolved, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise RootsandError(f"--json-status: {path} is not a regular file",
                                    hint="name a new file, or /dev/stdout, /dev/stderr or /dev/fd/N")
            os.ftruncate(fd, 0)
    except OSError as e:
        why = "a symbolic link is in the way" if e.errno == errno.ELOOP else os.strerror(e.errno)
        raise RootsandError(f"--json-status: cannot write {path}: {why}") from None
    return fd


def _run_helper(argv: list[str]) -> None:
    name = os.path.basename(argv[0])
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RootsandError(f"{name} failed: {e}") from None
    if done.returncode != 0:
        output = " ".join(done.stdout.split()) or f"exit status {done.returncode}"
        if not host.is_privileged_helper(argv[0]):
            hint = f"{argv[0]} must be setuid root or have file capabilities: reinstall the 'uidmap' package"
        else:
            hint = "check your ranges in /etc/subuid and /etc/subgid, or use idmap = \"single\""
        raise RootsandError(f"{name} could not write the sandbox's id map: {output}", hint=hint)


def _write_proc(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
