"""Shared test helpers: run the real `rootsand` command the way a user does, and report host gaps.

Integration tests need an unprivileged user with subordinate ranges (tests/run.sh makes one). Under
CI=true a skipped integration test counts as a failure: CI must prove every behaviour, not skip it.
"""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def rootsand_argv() -> list[str]:
    exe = shutil.which("rootsand", path=os.path.dirname(sys.executable)) or shutil.which("rootsand")
    # -P: not the current directory first on sys.path, where a sandbox may have planted a module
    return [exe] if exe else [sys.executable, "-P", "-m", "rootsand"]


def run(args, *, check_rc=None, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    """Run `rootsand ARGS...` and capture its output as text."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    done = subprocess.run(rootsand_argv() + list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check_rc is not None:
        assert done.returncode == check_rc, f"exit {done.returncode}, stdout={done.stdout!r} stderr={done.stderr!r}"
    return done


def sandbox(*command, opts=(), **kwargs) -> subprocess.CompletedProcess:
    """`rootsand run [OPTS] -- COMMAND` with the default expectations."""
    return run(["run", *opts, "--", *command], **kwargs)


def command_stderr(done: subprocess.CompletedProcess) -> list[str]:
    """The command's own stderr lines, rootsand's warnings left out; asserts that rootsand itself did not fail
    (exit 125 and a `rootsand: error:` line), which would leave the command unrun."""
    lines = done.stderr.splitlines()
    assert not any(line.startswith("rootsand: error:") for line in lines), (done.returncode, done.stderr)
    return [line for line in lines if not line.startswith("rootsand: warning:")]


def assert_command_failed(done: subprocess.CompletedProcess, status: int, *stderr: str) -> None:
    """The command ran and failed on its own: its exit status and exactly these stderr lines (rootsand's
    warnings aside), not a failure of rootsand's."""
    assert (done.returncode, command_stderr(done)) == (status, list(stderr)), (done.returncode, done.stderr)


def still_running(pids, seconds: float) -> list[str]:
    """Those of the processes `pids` that have not exited within `seconds`: each is watched through a pidfd,
    which becomes readable when the process exits (no polling)."""
    import select
    import time

    fds = {}
    try:
        for pid in pids:
            try:
                fds[os.pidfd_open(int(pid))] = pid
            except ProcessLookupError:
                pass  # gone already
        deadline = time.monotonic() + seconds
        while fds and (left := deadline - time.monotonic()) > 0:
            for fd in select.select(list(fds), [], [], left)[0]:
                os.close(fd)
                del fds[fd]
        return sorted(fds.values())
    finally:
        for fd in fds:
            os.close(fd)


def wait_until_gone(find, seconds: float = 3.0) -> list[str]:
    """Wait until find() (a list of pids) is empty, for at most `seconds`: each round waits for the processes
    found to exit, then looks again (a process may have forked meanwhile). Returns what find() still finds."""
    import time

    deadline = time.monotonic() + seconds
    while (left := find()) and time.monotonic() < deadline:
        if still_running(left, deadline - time.monotonic()) == [] and find() == left:
            # All have exited but are still listed: zombies that their parent has not reaped yet. Nothing
            # tells another process when that happens, so this one case polls.
            time.sleep(0.01)
    return left


def kill_once_ready(script: str, cwd, opts=()) -> None:
    """`rootsand run OPTS -- sh -c SCRIPT`, its launcher SIGKILLed (no clean-up of its own) once SCRIPT has
    printed `ready` (and before it exits: SCRIPT ends in a long sleep)."""
    import subprocess

    proc = subprocess.Popen(rootsand_argv() + ["run", *opts, "--", "sh", "-c", script], cwd=cwd,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def read_terminal(master, until: bytes | None, seconds: float) -> bytes:
    """What the terminal receives until `until` comes (None: until every writer is gone), or the deadline."""
    import select
    import time

    received = b""
    deadline = time.monotonic() + seconds
    while until is None or until not in received:
        if not select.select([master], [], [], max(0, deadline - time.monotonic()))[0]:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the last process with the terminal open has gone
            break
        if not data:
            break
        received += data
    return received


def host_gaps() -> list[str]:
    """Host features the integration tests need and this machine lacks (as the current user)."""
    from rootsand.ops import doctor

    gaps = [] if os.geteuid() != 0 else [
        "running as root: the integration tests must run as an unprivileged user (tests/run.sh)"]
    for check in doctor.checks():
        if check.status != doctor.OK and check.name != "cgroup v2":  # these machines test the rlimit fallback
            gaps.append(f"{check.name}: {check.detail}" + (f" (fix: {check.fix})" if check.fix else ""))
    return gaps


def pytest_report_header(config):
    gaps = host_gaps()
    if not gaps:
        return "rootsand host: every feature the tests need is here"
    return ["rootsand host: missing features:"] + [f"  - {g}" for g in gaps]


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        if f"{os.sep}root{os.sep}" in path:
            item.add_marker(pytest.mark.root)


PROC_SYS_READ_ONLY = "needs a writable /proc/sys (this machine's is read-only: a container?)"
OUTER_SECCOMP = "needs no seccomp filter around the tests (this machine has one: a container?)"
MACHINE_REASONS = (PROC_SYS_READ_ONLY, OUTER_SECCOMP)  # the machine's, not a test's fault: no failure under CI
# crun refuses every container where it sees cgroup v1 hierarchies beside a v2 mount
# (tests/integration/test_export_engines.py asserts that the host has it and that crun said so before it skips)
CRUN_HYBRID = "crun refuses hosts with a hybrid cgroup layout (v1 hierarchies beside a v2 mount), as this one has"
MACHINE_REASONS += (CRUN_HYBRID,)


def under_seccomp() -> bool:
    with open("/proc/self/status") as f:
        return any(line.split() == ["Seccomp:", "2"] for line in f)


def proc_sys_read_only() -> bool:
    try:
        return bool(os.statvfs("/proc/sys").f_flag & os.ST_RDONLY)
    except OSError:
        return False


def pytest_runtest_setup(item):
    if item.get_closest_marker("integration") and os.geteuid() == 0:
        pytest.skip("integration tests run as an unprivileged user: use tests/run.sh")
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs real root: tests/run.sh runs these as root")
    if item.get_closest_marker("writable_proc_sys") and proc_sys_read_only():
        pytest.skip(PROC_SYS_READ_ONLY)
    if item.get_closest_marker("no_outer_seccomp") and under_seccomp():
        pytest.skip(OUTER_SECCOMP)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marked = item.get_closest_marker("integration") or item.get_closest_marker("root")
    reason = report.longrepr[2] if report.skipped and isinstance(report.longrepr, tuple) else str(report.longrepr)
    # A read-only /proc/sys is this machine's, not a test's fault; anything else skipped under CI fails.
    if report.skipped and marked and os.environ.get("CI") == "true" and not any(r in reason for r in MACHINE_REASONS):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


@pytest.fixture
def deb_source():
    """deb_source(DIR) makes the tests' own Debian source package (tests/debsrc.py), unpacked, in DIR and
    returns the tree's path: a reference package build with no download."""
    import debsrc

    return debsrc.make


# -- what tests leave behind ----------------------------------------------------------------------------------

def owned_by_others(top) -> bool:
    """True when something at or below `top` belongs to another uid or gid than ours (a subordinate id: what
    root or a chown inside a sandbox made), or cannot be looked at: pytest, running as us, cannot remove it,
    and every later run's /tmp would keep it."""
    uid, gid = os.getuid(), os.getgid()
    unreadable = []
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return False
    if (st.st_uid, st.st_gid) != (uid, gid):
        return True
    for directory, dirs, files in os.walk(top, onerror=unreadable.append):
        for name in dirs + files:
            try:
                st = os.lstat(os.path.join(directory, name))
            except OSError:
                return True
            if (st.st_uid, st.st_gid) != (uid, gid):
                return True
    return bool(unreadable)


def remove_as_sandbox_root(path) -> None:
    """`rootsand unshare -- rm -rf PATH`: root of the sandboxes' id map removes files of subordinate ids too
    (the one command the README gives users for a tree a fakeroot build left)."""
    done = subprocess.run(rootsand_argv() + ["unshare", "--", "rm", "-rf", "--", str(path)], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert (done.returncode, os.path.lexists(path)) == (0, False), f"cannot remove {path}: {done.stderr}"


@pytest.fixture(autouse=True)
def _remove_what_subordinate_ids_own(request):
    """Every test's tmp_path, once the test is done, if anything in it belongs to a subordinate id: removed as
    root of the sandboxes' map (a rule, so new tests that chown or build packages need nothing)."""
    yield
    path = request.node.funcargs.get("tmp_path")
    if path is not None and os.geteuid() != 0 and owned_by_others(path):
        remove_as_sandbox_root(path)


@pytest.fixture(autouse=True, scope="session")
def _remove_what_subordinate_ids_own_at_the_end(tmp_path_factory):
    """The same for the rest of the session's temporary directories (tmp_path_factory.mktemp's)."""
    yield
    if os.geteuid() == 0:
        return
    base = tmp_path_factory.getbasetemp()
    for name in os.listdir(base):
        if owned_by_others(base / name):
            remove_as_sandbox_root(base / name)
