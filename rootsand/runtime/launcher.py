"""The host side of a sandbox: carry out a Plan. Fork, write the id maps, forward signals, enforce the
timeout, report.

    launcher L (host, your uid; a child subreaper)
      fork -> C: unshare(USER|...); reports "unshared"; waits for "G"
      L: newuidmap/newgidmap C (or writes a single-id map); "G"
      C: fork -> P1 (PID 1 inside); reports P1's pid
      L: opens and holds the namespaces (for exec), then lets C go; C exits once P1 has built the sandbox
      P1: now L's child, ties itself to L; forks the command
      L: forwards signals to P1, waits for P1, exits with the command's status

The report pipe (channel.py) tells L about failures inside; PDEATHSIG ties C to L, P1 to C while it
builds and to L after, and everything in the PID namespace dies with P1, so a killed launcher leaves
nothing behind. While the command runs only L and P1 are resident. The host side effects (a cgroup,
slirp4netns, sockets) happen here, in the execution, never in planning.
"""

import errno
import gc
import json
import os
import re
import select
import signal
import stat
import time

from rootsand.config.model import NAMESPACE_LINKS
from rootsand.errors import ExitCode, RootsandError, printable, say, stage, warn
from rootsand.guard import leftovers
from rootsand.linux import libc, procfs
from rootsand.net.backend import backend_for
from rootsand.ops import registry
from rootsand.runtime import channel, init
from rootsand.security import cgroup, limits

# A signal that arrives before PID 1 exists ends the launcher; later ones are passed on to the command.
TERMINATING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class Runtime:
    """What the execution of a plan holds besides the plan: fds, the cgroup made."""

    def __init__(self, plan, verbose: bool = False, debug: bool = False):
        self.plan = plan  # resolved (hostprep.py) by the launcher before anything is made
        self.verbose = verbose
        self.debug = debug
        self.cgroup_dir: str | None = None  # the sandbox's own cgroup, when the plan has cgroup limits
        self.console_fd: int | None = None  # a relayed terminal: PID 1 sends the pty master over this
        self.console_launcher_fd: int | None = None  # the launcher's end, closed at once by the sandbox's processes
        self.net = backend_for(plan.network)  # what the network mode does here, in C and in PID 1
        self.alive_fd: int | None = None  # PID 1 sees end of file here once the launcher is gone

    @property
    def steps(self) -> list:
        """The mount steps as carried out: host sources resolved and checked, kinds decided."""
        return self.plan.resolved.mounts

    @property
    def rootfs(self) -> str | None:
        return self.plan.resolved.rootfs


def run(the_plan, json_status: str | None = None, verbose: bool = False, debug: bool = False,
        detached=None, bwrap_status: bool = False, info_fd: int | None = None) -> int:
    """Carry out a plan; the command's exit status (or 124, 125, 126, 127). `detached`: run -d's
    (runtime/detach.py), told when the command runs; its terminal, if any, is attachable. `bwrap_status`:
    the status lines as bubblewrap writes them (its namespace keys; an exit code only for a command that
    ran), the first also to `info_fd` (--info-fd), and a failure raised, not said."""
    for note in the_plan.notes:
        warn(note)
    # How the limits fall short on this host: the same on every run until the host changes, so said once
    # per boot (doctor and -v say it always): a line on every run teaches users to skip rootsand's lines
    short = "; ".join(the_plan.limits.not_enforced)
    if short and verbose:
        warn(short)
    elif short and registry.first_this_boot("limits", short):
        warn(f"{short} (said once per boot: rootsand doctor and run -v say it again)")
    runtime = Runtime(the_plan, verbose, debug)
    if verbose:
        for line in limits.describe_limits(the_plan.limits, the_plan.memory):
            say(f"rootsand: limits: {line}")
    if the_plan.cgroup_parent:
        runtime.cgroup_dir = cgroup.make_cgroup(the_plan.cgroup_parent, f"rootsand-{os.getpid()}",
                                                  the_plan.limits.cgroup)
    try:
        launcher = Launcher(runtime, json_status, detached)
        launcher.bwrap_status, launcher.info_fd = bwrap_status, info_fd
        return launcher.run()
    finally:
        if runtime.cgroup_dir:  # also when the launcher failed before its own cleanup could run
            cgroup.remove_cgroup(runtime.cgroup_dir)


def _since(tops) -> float:
    """The start of the run for the checks after it. The kernel's file times lag its clock by up to a tick
    (20 ms covers HZ=100), and some file systems keep whole seconds (ext4 with small inodes, vfat, some NFS
    servers): where a top's own times have no fraction, the start is the whole second (a change made earlier
    in that second counts as the run's)."""
    now = time.time()
    for top in tops:
        try:
            st = os.lstat(top)
        except OSError:
            continue
        if st.st_ctime_ns % 1_000_000_000 == 0 and st.st_mtime_ns % 1_000_000_000 == 0:
            return float(int(now))
    return now - 0.02


class Launcher:
    def __init__(self, runtime: Runtime, json_status: str | None, detached=None):
        self.runtime = runtime
        self.detached = detached
        self.plan = runtime.plan
        # Where setuid bits are cleared at exit: resolved before the sandbox could plant a link that would
        # point the walk at other files of the user's (hostprep.py)
        self.setuid_tops: list[str] = []
        self.json_status = json_status
        self.namespaces: dict[str, int] = {}  # read from C once it has unshared (PID 1 is not dumpable)
        self.child: int | None = None  # C, as the host sees it
        self.pid1: int | None = None  # the sandbox's PID 1, as the host sees it
        self.pid1_fd: int | None = None  # a pidfd of PID 1: signals never reach a process that reused its pid
        self.interrupted: int | None = None  # a terminating signal that came before PID 1 existed
        self.error: RootsandError | None = None
        self.command_started = False  # its process said it is about to execve
        self.ns_fds: dict[str, int] = {}  # the sandbox's namespaces, held for rootsand exec
        self.protect_lock: int | None = None
        self.protect: dict | None = None  # {"covered": host paths, "made": [[path, is_dir]]}: security.protect
        self.relay = None
        self.status_fd: int | None = None
        self._status_done = False
        self.status_warning: str | None = None
        self.late_notes: list[str] = []
        self.handover = None  # guard/handover.py: what the run leaves to the user, done at exit
        self._handover_record: dict | None = None  # in our registry entry: the staging directory to sweep
        self.started = time.monotonic()
        self.monitor_message: dict | None = None  # what `ns monitor`s were told of the sandbox, once it is up
        self.bwrap_status = False  # run(): bubblewrap's status lines
        self.info_fd: int | None = None

    def log(self, message: str) -> None:
        if self.runtime.verbose:
            stage(message)

    def say(self, lines: list[str]) -> None:
        """Lines for the user: on a terminal that is no longer raw."""
        if self.relay:
            self.relay.stop()
        for line in lines:
            say(line)  # (nobody may read our stderr any more: the exit status still tells)

    def run(self) -> int:
        # The name is ours, or this is an error before anything runs (killed launchers' entries are swept
        # here, so before we take the lock below: a sweep needs it exclusive).
        self.entry_path = leftovers.claim(self.plan.name, detached=self.detached is not None)
        try:
            if self.plan.protected:
                # Held until the protected paths are mounted: no sweep may remove a mount point we are about
                # to use; our entry names them (and what we make) before anything is made.
                self.protect_lock = leftovers.protect_lock(exclusive=False)
            # The plan against the host as it is now, under the lock: what the sandbox is built from
            from rootsand.runtime import hostprep

            registry.make_runtime_dirs()  # each then covered where a mount shows it, never filled later in view
            self.plan = self.runtime.plan = hostprep.resolve(self.plan)
            resolved = self.plan.resolved
            if resolved.made:
                self.log(f"making what binds need on the host: {', '.join(resolved.made)}")
                for warning in hostprep.make_missing(self.plan):
                    warn(warning)
            self.setuid_tops = resolved.setuid_tops
            if resolved.protect is not None:
                tops = {resolved.mounts[item.mount].src for item in self.plan.protected}
                self.protect = {**resolved.protect, "since": _since(tops)}
                if resolved.audit:  # checked at exit (gitaudit.py): changes from now on are the sandbox's
                    self.protect["audit"] = {**resolved.audit, "since": _since(resolved.audit["tops"])}
                registry.publish(self.entry_path, {**registry.read_raw(self.entry_path), "protect": self.protect})
            if resolved.handover:
                self._prepare_handover(resolved.handover)
            for warning in resolved.warnings:
                warn(warning)
            if self.runtime.verbose:
                for note in resolved.notes:
                    say(f"rootsand: {printable(note)}")
            return self._run()
        finally:
            if self.monitor_message:  # its processes are all gone: reaped before _run returned
                self._tell_monitors("gone")
            self._release_protect_lock()
            userns = self.ns_fds.get("user")  # the sandbox's, for the work on what it left
            if self.handover:
                try:
                    for line in self.handover.finish(self.plan.ids, userns):
                        warn(line)
                except OSError as e:
                    warn(f"could not hand over what the run left: {e.strerror}")
            # What the sandbox may have left on the host, checked and undone (guard/leftovers.py)
            for line in leftovers.after_run(self.entry_path, self.protect, self.setuid_tops, self.plan.ids, userns):
                warn(line)

    def _prepare_handover(self, handover) -> None:
        """The staging directory made (named in our entry first: when we are killed, a sweep removes it) and
        the descriptors held (guard/handover.py)."""
        from rootsand.guard.handover import Handover

        if handover.staging:
            self._handover_record = {"staging": handover.staging, "mount_point": handover.mount_point,
                                     "ids": self.plan.ids.to_json()}
            registry.publish(self.entry_path, {**registry.read_raw(self.entry_path), "handover": self._handover_record})
        self.handover = Handover(handover, self.plan.run_uid, (self.plan.setup_uid, self.plan.setup_gid),
                                 _since([handover.top] if handover.top else []))
        self.handover.prepare()

    def _release_protect_lock(self) -> None:
        if self.protect_lock is not None:
            os.close(self.protect_lock)
            self.protect_lock = None

    def _publish_entry(self) -> None:
        """The registry entry, once the sandbox is up: what ps, exec, inspect and stop need."""
        entry = {
            "name": self.plan.name, "status": "running", "created": time.time(),
            "launcher": {"pid": os.getpid(), "start": procfs.start_time(os.getpid())},
            "ns_fds": self.ns_fds,  # /proc/LAUNCHER/fd/N: the namespaces, which exec joins
            "pid1": {"pid": self.pid1, "start": procfs.start_time(self.pid1)},
            "namespaces": self.namespaces, "profile": self.plan.profile, "command": self.plan.argv,
            "net": self.plan.network.mode, "publish": [str(f) for f in self.plan.network.publish],
            "pod": self.plan.network.pod,
            "cgroup": self.runtime.cgroup_dir,
            **({"protect": self.protect} if self.protect else {}),
            **({"handover": self._handover_record} if self._handover_record else {}),
            # what the exit clears, for the next sweep to do when we are killed first (guard/leftovers.py)
            **({"setuid": {"tops": self.setuid_tops, "ids": self.plan.ids}}
               if self.plan.setuid_bits else {}),
            "plan": self.plan,  # a Record: registry.publish encodes it
        }
        try:
            registry.publish(self.entry_path, entry)
        except OSError as e:
            self.late_notes.append(f"cannot write the registry entry {self.entry_path}: {e.strerror}")
        self._tell_monitors("new")

    def _tell_monitors(self, event: str) -> None:
        """Tell running `ns monitor`s that the sandbox is up or has ended (registry.tell_monitors)."""
        if self.monitor_message is None:
            self.monitor_message = {"sandbox": self.plan.name, "launcher": os.getpid(), "pid": self.pid1,
                                    "command": " ".join(self.plan.argv)[:1024], "namespaces": self.namespaces}
        registry.tell_monitors(os.path.dirname(self.entry_path), {"event": event, **self.monitor_message})

    def _run(self) -> int:
        if self.json_status:
            self.status_fd = _open_status_file(self.json_status, self.plan.resolved.writable, tuple(self.plan.homes))
        if self.plan.new_session and (self.plan.tty or any(os.isatty(fd) for fd in (0, 1, 2))):
            from rootsand.runtime.terminal import Relay

            self.relay = Relay(every=self.plan.tty)
            if self.detached:
                try:
                    self.relay.listen(self.detached.attach_path)
                except OSError as e:  # e.g. a path too long for a socket: the sandbox runs, unattachable
                    warn(f"cannot make {self.detached.attach_path}: {e.strerror or e}: 'rootsand attach' "
                         "will not reach this sandbox")
            self.runtime.console_fd, self.runtime.console_launcher_fd = self.relay.console_fd, self.relay.console.fileno()
        self.runtime.net.prepare()
        go_r, go_w = os.pipe()
        report_r, report_w = os.pipe2(os.O_CLOEXEC)
        # The setup process exits once PID 1 exists and we hold the namespaces: PID 1 is then ours (a child
        # subreaper gets its orphans), one Python process fewer resident while the command runs.
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        self.runtime.alive_fd, alive_w = os.pipe2(os.O_CLOEXEC)
        # Block the forwarded signals across fork: the children inherit the mask and unblock when ready.
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, init.FORWARDED)
        launcher_pid = os.getpid()
        gc.freeze()  # start-up's objects: never collected, so the children never write to their pages
        pid = os.fork()
        if pid == 0:
            os.close(go_w)
            os.close(report_r)
            os.close(alive_w)
            if self.status_fd is not None:
                os.close(self.status_fd)
            if self.info_fd is not None:  # ours: its reader sees end of file once we have written
                os.close(self.info_fd)
            if self.protect_lock is not None:
                # Ours alone: a copy in PID 1 (which never execs) would hold the lock for the whole run, and
                # every sweep of a killed launcher's leftovers would wait for it in vain.
                os.close(self.protect_lock)
            if self.detached:
                self.detached.close_in_child()
                if self.relay and self.relay.listener:
                    self.relay.listener.close()
            from rootsand.runtime import inside
            inside.child_main(self.runtime, launcher_pid, go_r, report_w)
        self.child = pid
        # The collector is off for the start-up (cli/entry.py): back on in the launcher at once, so every
        # process it forks from now on (the proxy) collects too. The setup process exits soon; PID 1 turns it
        # on once it has built the sandbox (init.py).
        gc.enable()
        self._alive_w = alive_w  # held until we exit
        os.close(self.runtime.alive_fd)
        self.runtime.net.after_fork(in_child=False)
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
            try:
                code = self._supervise()
            except RootsandError:
                self.late_notes.clear()  # the error is what the user needs to see, and it is said last
                killed = self._killed_while_building(self._setup_process_status(), None)
                if killed:  # what failed here failed because of that (a namespace gone, maps not written)
                    raise killed from None
                raise
            return code
        finally:
            # Each step on its own: none may skip the next (the terminal above all).
            try:
                try:
                    self.runtime.net.finish()  # first: a proxy's last "blocked" lines come before the exit code
                    self._write_status(code)  # once, whatever ended the run
                finally:
                    # No handler may run in the middle of cleaning up.
                    signal.pthread_sigmask(signal.SIG_BLOCK, init.FORWARDED)
                    self._close_go()
                    self._reports.close()
                    self._kill_and_reap()
            finally:
                try:
                    self.runtime.net.stop()
                finally:
                    if self.relay:
                        self.relay.stop()
                    if self.status_fd is not None:
                        os.close(self.status_fd)
                    for note in self.late_notes + ([self.status_warning] if self.status_warning else []):
                        warn(note)

    def _close_go(self) -> None:
        if self._go_w is not None:
            os.close(self._go_w)
            self._go_w = None

    def _supervise(self) -> int:
        deadline = self.started + self.plan.timeout if self.plan.timeout else None
        pidfd = os.pidfd_open(self.child)
        from rootsand.runtime import maps  # imported while the setup process unshares: not before the fork

        try:
            # 1. The child has unshared: write its maps, then let it go on.
            while not self._handle(self._reports.read(self._wait(deadline))):
                if self._reports.fd is None or self._timed_out(deadline) or self.interrupted:
                    return self._finish(pidfd, deadline)
            if not self.runtime.net.joins_user:  # else the namespace joined has its maps (a pod's)
                maps.write_maps(self.plan.ids, self.child)
                self.log("id maps written")
            self.runtime.net.start(self.child, self.log)
            if self.interrupted:
                return 128 + self.interrupted
            try:
                os.write(self._go_w, b"G")
            except BrokenPipeError:
                pass  # the child failed while we wrote its maps: _finish reports why
            # 2. Until the command runs (or setup fails), then until the sandbox ends. The setup process
            # waits on the same pipe once PID 1 exists; its end of file (at "pid1") lets it exit.
            return self._finish(pidfd, deadline)
        finally:
            os.close(pidfd)

    def _finish(self, pidfd: int, deadline: float | None) -> int:
        """Until the sandbox ends: with the setup process (`pidfd`) if it never made PID 1, else with PID 1,
        which is our child once the setup process has exited."""
        setup_status = None  # the setup process's wait status once reaped: its death takes PID 1 with it
        while True:
            if self.interrupted:
                return 128 + self.interrupted
            watched = pidfd if self.child is not None else self.pid1_fd
            reads = [watched] if self._reports.fd is None else [watched, self._reports.fd]
            writes = []
            if self.relay:
                reads += self.relay.read_fds()
                writes += self.relay.write_fds()
            ready, writable, _ = select.select(reads, writes, [], self._wait(deadline))
            if self._reports.fd in ready:
                self._handle(self._reports.read(0))
                if self._reports.fd is None:
                    self._release_protect_lock()  # the command runs: its protected paths are in place
                    if self.command_started and self.error is None:
                        self.log("the command runs (its execve closed the report pipe)")
                        if self.detached:
                            self.detached.started()
            if self.relay:
                self.relay.pump(ready, writable)
            if watched in ready:
                if watched != pidfd:
                    _, status = os.waitpid(self.pid1, 0)  # ours since the setup process exited
                    self._forget_pid1()
                    break
                _, status = os.waitpid(self.child, 0)
                setup_status, self.child = status, None
                if self.pid1_fd is None:
                    break  # no PID 1: the setup process's status is the sandbox's
                continue
            if self._timed_out(deadline):
                self.log("timeout: killing the sandbox")
                self._kill_and_reap()
                self.say([f"rootsand: error: the command ran out of time ({self.plan.timeout:g}s): sandbox killed"])
                return ExitCode.TIMEOUT
        if self.relay:
            self.relay.drain()
        # Every report was written before C exited, but P1 and the command may close their ends a bit later.
        end = time.monotonic() + 1
        while self._reports.fd is not None and time.monotonic() < end:
            self._handle(self._reports.read(max(0.0, end - time.monotonic())))
        code = init.exit_status(status)
        # A kill during set-up is the cause: what a process reported after it (PID 1's write to the pipe of
        # the setup process that was killed: "Broken pipe") is its consequence (found on Debian 13)
        self.error = self._killed_while_building(setup_status, status) or self.error
        if self.error:
            if self.bwrap_status:  # raised to the front end, which says it as bubblewrap does (cli/bwrap.py)
                raise self.error
            self.say(self.error.lines())
            code = self.error.code
        self.log(f"sandbox ended with status {code}")
        return code

    def _killed_while_building(self, setup_status: int | None, pid1_status: int | None) -> RootsandError | None:
        """The error for a sandbox killed from outside before its command started (an OOM kill, a kill -9),
        from the wait status of the setup process (whose death takes PID 1 with it) or of PID 1: else the
        user sees a 137 or 125 of a command that never ran."""
        if self.command_started:
            return None
        if setup_status is not None and os.WIFSIGNALED(setup_status):
            which, signal_number = "setup process", os.WTERMSIG(setup_status)
        elif pid1_status is not None and os.WIFSIGNALED(pid1_status):
            which, signal_number = "PID 1", os.WTERMSIG(pid1_status)
        else:
            return None
        return RootsandError(f"the sandbox's {which} was killed by {init.signal_name(signal_number)} "
                             "before the command started")

    def _setup_process_status(self) -> int | None:
        """The setup process's wait status if it has ended or is ending, left for the reaping that follows. A
        kill shows in its /proc entries (its namespaces gone) before it can be waited for: a step that failed
        for that waits for the end, so the error names the kill and not the entry that vanished."""
        if self.child is None:
            return None
        if procfs.exiting(self.child):
            pidfd = os.pidfd_open(self.child)  # our unreaped child: its pid cannot be reused
            try:
                select.select([pidfd], [], [], 10)  # readable once it has exited (bounded: a hang in exit)
            finally:
                os.close(pidfd)
        try:
            info = os.waitid(os.P_PID, self.child, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return None
        if info is None:
            return None
        return info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status << 8

    def _handle(self, messages: list[dict]) -> bool:
        """Act on reports from inside; True once the child reports it has unshared."""
        unshared = False
        for m in messages:
            if "error" in m and self.error is None:
                self.error = channel.error_from(m)
            elif "note" in m:
                self.late_notes.append(m["note"])  # said at the end: the terminal may be raw now
            elif m.get("stage") == "network":
                self.runtime.net.serve(self.status_fd, self.runtime.verbose, self.log)
            elif m.get("stage") == "exec":
                self.command_started = True
            elif m.get("stage") == "tied":
                self.log("sandbox built; PID 1 tied to the launcher")
                self._let_pid1_go()
            elif m.get("stage") == "unshared":
                self.log("namespaces created")
                self._read_namespaces(later=False)
                unshared = True
            elif "pid1" in m:
                self.pid1 = m["pid1"]
                self.pid1_fd = _pidfd_of_child(self.pid1, self.child)
                self.log(f"PID 1 is {self.pid1} on the host")
                self._read_namespaces(later=True)
                self._hold_namespaces()
                self._close_go()  # the setup process may exit now: PID 1 becomes our child
                self._publish_entry()
                self._write_status(None)
        return unshared

    def _read_namespaces(self, later: bool) -> None:
        """The sandbox's namespace inodes, from C: it made them and stays readable (PID 1 turns non-dumpable).
        C itself stays in the host's PID and time namespaces; the sandbox's are those of its children, which
        exist once PID 1 does (later=True)."""
        for ns in NAMESPACE_LINKS:
            if ns not in self.plan.namespaces or later != (ns in ("pid", "time")):
                continue  # the sandbox's own: with --net host the network is the host's, not one to join
            name = _setup_ns_link(ns)
            try:
                self.namespaces[ns] = os.stat(f"/proc/{self.child}/ns/{name}").st_ino
            except OSError as e:
                if later and e.errno == errno.ENOENT and not _alive(self.pid1_fd):
                    continue  # PID 1 is gone already (its setup failed): its error is what the user needs
                raise RootsandError(f"cannot read the sandbox's {ns} namespace: /proc/{self.child}/ns/{name}: "
                                    f"{e.strerror}") from None

    def _let_pid1_go(self) -> None:
        """PID 1 armed PDEATHSIG after the setup process exited: if it is our child, our death now takes it
        with it, and it may start the command."""
        if self.pid1_fd is not None and procfs.parent_of(self.pid1) == os.getpid():
            try:
                os.write(self._alive_w, b"G")
                return
            except OSError:
                pass
        self._kill_and_reap()  # not ours (cannot happen while we live): it must not run the command
        raise RootsandError("PID 1 of the sandbox is not the launcher's child: the sandbox was stopped")

    def _hold_namespaces(self) -> None:
        """Open the sandbox's namespaces from the setup process before it exits and keep them: `rootsand
        exec` joins them through /proc/LAUNCHER/fd/N (PID 1 is not dumpable, and no other process of ours
        stays in them)."""
        for ns in self.namespaces:
            try:
                fd = os.open(f"/proc/{self.child}/ns/{_setup_ns_link(ns)}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # the setup failed meanwhile: its error is what the user needs
            if os.fstat(fd).st_ino != self.namespaces[ns]:
                os.close(fd)
                continue
            self.ns_fds[ns] = fd

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
        """SIGKILL PID 1 (which takes the whole PID namespace with it) and the setup process; reap them."""
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
        if self.pid1_fd is not None:  # not reaped yet: ours now that the setup process is gone
            try:
                os.waitpid(self.pid1, 0)
            except ChildProcessError:
                pass
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
        if code is None:
            line = {"child-pid": self.pid1, "name": self.plan.name, "namespaces": self.namespaces,
                    "registry": self.entry_path}
            if self.bwrap_status:  # bubblewrap's keys: "mnt-namespace" and so on
                line.update({f"{NAMESPACE_LINKS[ns]}-namespace": ino for ns, ino in self.namespaces.items()})
                if self.info_fd is not None:
                    fd, self.info_fd = self.info_fd, None
                    try:
                        os.write(fd, (json.dumps(line, indent=4) + "\n").encode())
                        os.close(fd)
                    except OSError:
                        pass
        else:
            line = {"exit-code": code}
            if self.bwrap_status and (not self.command_started or self.error):
                return  # bubblewrap: no exit code for a command that never ran
        if self.status_fd is None or (code is not None and self._status_done):
            return
        self._status_done = code is not None
        data = (json.dumps(line) + "\n").encode()
        try:
            if os.write(self.status_fd, data) != len(data):
                raise BlockingIOError(errno.EAGAIN, "the reader is not keeping up")
        except OSError as e:
            fd, self.status_fd = self.status_fd, None
            os.close(fd)
            # Said at the end: the terminal may be raw now.
            self.status_warning = f"--json-status: cannot write {self.json_status}: {e.strerror or e}"


def _setup_ns_link(ns: str) -> str:
    """The setup process's /proc/PID/ns link to the sandbox's namespace `ns`: it stays in the host's PID and
    time namespaces itself, and the sandbox's are those of its children."""
    return NAMESPACE_LINKS[ns] + ("_for_children" if ns in ("pid", "time") else "")


def _alive(pidfd: int | None) -> bool:
    """True while the process of `pidfd` has not exited (a pidfd turns readable when it does)."""
    return pidfd is not None and not select.select([pidfd], [], [], 0)[0]


def _pidfd_of_child(pid: int, parent: int) -> int | None:
    """A pidfd for `pid` if it is still `parent`'s child (so not a stranger that reused a reaped pid)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    if procfs.parent_of(pid) != parent:
        os.close(fd)
        return None
    return fd


# Paths that name one of the caller's own descriptors: links no sandbox can plant, followed as asked.
_FD_PATHS = re.compile(r"/dev/(stdout|stderr|fd/\d+)|/proc/self/fd/\d+")


def _open_status_file(path: str, writable: list[str], homes: tuple[str, ...]) -> int | None:
    """Opened before anything runs, non-blocking, and never through a link a sandbox could have planted: a
    sandbox that can write the directory must not turn the next run's status file into a link to one of
    the user's files, nor into a FIFO that stalls the launcher."""
    from rootsand.guard.hostpaths import open_nofollow, resolve_source

    absolute = os.path.abspath(path)
    try:
        if _FD_PATHS.fullmatch(absolute):
            fd = os.open(absolute, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        else:
            parent, name = os.path.split(absolute)
            resolved = os.path.join(resolve_source(parent, writable, "--json-status", homes), name)
            fd = open_nofollow(resolved, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                # A FIFO, socket or device where a file was expected (a sandbox can plant one in a directory
                # it writes): not written, said once, and the run goes on
                warn(f"--json-status: {path} is not a regular file: no status is written (name a new file, or "
                     "/dev/stdout, /dev/stderr or /dev/fd/N)")
                return None
            os.ftruncate(fd, 0)
    except OSError as e:
        if e.errno == errno.ENXIO:  # a FIFO without a reader
            warn(f"--json-status: {path} is a FIFO nobody reads: no status is written")
            return None
        why = "a symbolic link is in the way" if e.errno == errno.ELOOP else os.strerror(e.errno)
        raise RootsandError(f"--json-status: cannot write {path}: {why}") from None
    return fd


