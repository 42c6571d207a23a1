"""`rootsand-bwrap`: bubblewrap's command line on rootsand's runtime, proven by bubblewrap's own test suite
(fetched at run time from Debian's archive, as apt on this machine is set up to reach it) and by the command
lines of the tools that call bwrap."""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request

import pytest

from conftest import run

pytestmark = pytest.mark.integration

# bubblewrap's upstream tarballs as Debian ships them: 0.8.0 is Debian 12's, 0.12.0 the newest (trixie's).
# (version, checks in its tests/test-run.sh, how far rootsand-bwrap must get, sha256 of the .orig.tar.xz)
SUITES = [
    ("0.8.0", 58, 52, "957ad1149db9033db88e988b12bcebe349a445e1efc8a9b59ad2939a113d333a"),
    ("0.12.0", 66, 59, "9760d007363e3abba7c747489910f9f82d9fca53ba3bd3282e396fa3c97a3314"),
]


@pytest.fixture(scope="module")
def bwrap_dir(tmp_path_factory) -> str:
    """A directory with `rootsand-bwrap` in it: the installed console script, else (a dev copy run from
    PYTHONPATH) a script that runs the same entry point."""
    installed = shutil.which("rootsand-bwrap", path=os.path.dirname(sys.executable))
    if installed:
        return os.path.dirname(installed)
    directory = tmp_path_factory.mktemp("bin")
    script = directory / "rootsand-bwrap"
    script.write_text(f'#!/bin/sh\nexec {sys.executable} -m rootsand.cli.bwrap "$@"\n')
    script.chmod(0o755)
    return str(directory)


def bwrap(bwrap_dir, *args, **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([os.path.join(bwrap_dir, "rootsand-bwrap"), *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_a_codex_style_command_line_runs_unchanged(bwrap_dir, tmp_path):
    """sandbox-runtime's and Codex's shape: the host read-only, the project writable but its .git, no network."""
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    script = ("echo built > out.txt; "
              "if echo evil > .git/hooks/pre-commit; then echo WROTE-GIT; fi; "
              "if touch /usr/rootsand-bwrap-probe; then echo WROTE-USR; fi; "
              "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; test -c /dev/null && echo dev")
    cwd = str(project)
    done = bwrap(bwrap_dir, "--ro-bind", "/", "/", "--bind", cwd, cwd, "--ro-bind", f"{cwd}/.git", f"{cwd}/.git",
                 "--unshare-net", "--die-with-parent", "--new-session", "--proc", "/proc", "--dev", "/dev",
                 "--", "sh", "-c", script, cwd=cwd)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lo", "dev"], done.stdout  # no WROTE-*: only loopback in its network
    assert "Read-only file system" in done.stderr
    assert (project / "out.txt").read_text() == "built\n" and (project / "out.txt").stat().st_uid == os.getuid()
    assert not (project / ".git" / "hooks" / "pre-commit").exists()


def test_bwraps_errors_and_statuses(bwrap_dir, tmp_path):
    done = bwrap(bwrap_dir, "--bind", "/", "/", "--bind", "/source-enoent", "/dest", "true")
    assert (done.returncode, done.stderr) == (1, "bwrap: Can't find source path /source-enoent: No such file or "
                                                 "directory\n")
    done = bwrap(bwrap_dir, "--frobnicate", "true")
    assert (done.returncode, done.stderr) == (1, "bwrap: Unknown option --frobnicate\n")
    done = bwrap(bwrap_dir, "--userns", "3", "true")
    assert done.returncode == 1 and done.stderr.startswith("bwrap: --userns is not supported by rootsand's bwrap")
    # what fails in the runtime before the command runs: a bwrap: line too, and status 1, as bubblewrap has it
    done = bwrap(bwrap_dir, "--ro-bind", "/", "/", "--dir", "/usr/rootsand-bwrap-x", "true")
    assert (done.returncode, done.stderr) == (1, "bwrap: --dir /usr/rootsand-bwrap-x: Read-only file system\n")
    done = bwrap(bwrap_dir, "--ro-bind", "/", "/", "no-such-command-x")
    assert done.returncode == 1 and done.stderr.startswith("bwrap: no-such-command-x: command not found"), done
    done = run(["bwrap", "--frobnicate", "true"])  # `rootsand bwrap` is the same front end
    assert (done.returncode, done.stderr) == (1, "bwrap: Unknown option --frobnicate\n")
    assert run(["bwrap", "--help"], check_rc=0).stdout.startswith("usage: rootsand bwrap [OPTIONS...]")
    # the command's own status, and a command that is an option's name after --
    assert bwrap(bwrap_dir, "--ro-bind", "/", "/", "sh", "-c", "exit 7").returncode == 7
    assert bwrap(bwrap_dir, "--ro-bind", "/", "/", "--", "--dev-bind", "/dev", "/dev", "true").returncode != 0


def test_ids_environment_and_files_as_bwrap_gives_them(bwrap_dir, tmp_path):
    done = bwrap(bwrap_dir, "--ro-bind", "/", "/", "--tmpfs", "/tmp", "--perms", "0640", "--file", "0", "/tmp/f",
                 "--symlink", "f", "/tmp/l", "--unsetenv", "HOME", "--setenv", "X", "y", "--chdir", "/tmp",
                 "sh", "-c", 'id -u; echo "$X ${HOME-unset} $PWD"; stat -c %a f; cat l',
                 input="data\n", stdin=None)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [str(os.getuid()), "y unset /tmp", "640", "data"]


def test_the_callers_descriptors_reach_the_command_as_with_bwrap(bwrap_dir, tmp_path):
    (tmp_path / "given").write_text("through fd 5\n")  # (whichever number it gets)
    fd = os.open(tmp_path / "given", os.O_RDONLY)
    try:
        done = bwrap(bwrap_dir, "--ro-bind", "/", "/", "cat", f"/dev/fd/{fd}", pass_fds=[fd])
    finally:
        os.close(fd)
    assert (done.returncode, done.stdout) == (0, "through fd 5\n"), done.stderr


def test_a_compiled_seccomp_program_is_loaded(bwrap_dir, tmp_path):
    import errno

    import pyseccomp

    denylist = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for call in ("mkdir", "mkdirat"):
        denylist.add_rule(pyseccomp.ERRNO(errno.ECONNREFUSED), call)
    with open(tmp_path / "filter.bpf", "wb") as f:
        denylist.export_bpf(f)
    fd = os.open(tmp_path / "filter.bpf", os.O_RDONLY)
    try:
        done = bwrap(bwrap_dir, "--ro-bind", "/", "/", "--tmpfs", "/tmp", "--seccomp", str(fd), "sh", "-c",
                     "touch /tmp/file && mkdir /tmp/dir", pass_fds=[fd])
    finally:
        os.close(fd)
    assert done.returncode == 1 and "Connection refused" in done.stderr, done.stderr


def test_block_fd_holds_the_command_until_the_caller_lets_it_go(bwrap_dir, tmp_path):
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    flag = tmp_path / "ran"
    sandbox = subprocess.Popen([os.path.join(bwrap_dir, "rootsand-bwrap"), "--bind", "/", "/",
                                "--info-fd", str(info_w), "--block-fd", str(block_r), "touch", str(flag)],
                               pass_fds=[info_w, block_r], stdin=subprocess.DEVNULL)
    os.close(info_w)
    os.close(block_r)
    try:
        with os.fdopen(info_r) as f:
            assert json.loads(f.read())["child-pid"] > 0  # the sandbox is up: its command waits
        assert not flag.exists() and sandbox.poll() is None
        os.write(block_w, b"x")
        assert sandbox.wait(timeout=60) == 0 and flag.exists()
    finally:
        os.close(block_w)
        sandbox.kill()
        sandbox.wait()


def test_bwrap_sandboxes_are_in_ps_and_inspect(bwrap_dir):
    read_end, write_end = os.pipe()
    sandbox = subprocess.Popen([os.path.join(bwrap_dir, "rootsand-bwrap"), "--ro-bind", "/", "/", "--unshare-pid",
                                "--info-fd", str(write_end), "sleep", "120"], pass_fds=[write_end],
                               stdin=subprocess.DEVNULL)
    os.close(write_end)
    try:
        with os.fdopen(read_end) as f:
            info = json.loads(f.read())  # written once the sandbox is up, then closed
        assert info["child-pid"] > 0 and info["pid-namespace"] > 0
        name = f"bwrap-{sandbox.pid}"
        listing = run(["ps"], check_rc=0).stdout
        row = next(line.split() for line in listing.splitlines() if line.startswith(name + " "))
        assert row[1:3] == [str(sandbox.pid), "bwrap"] and row[-2:] == ["sleep", "120"]
        shown = run(["inspect", name], check_rc=0).stdout
        assert f"name: {name}" in shown and "profile: bwrap" in shown and f"pid:[{info['pid-namespace']}]" in shown
    finally:
        sandbox.terminate()
        assert sandbox.wait(timeout=60) == 128 + 15


def _archive_uri() -> str:
    """The Debian archive apt is set up with here (deb822 .sources or sources.list), not its security one."""
    uris = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            uris += [word for line in f if line.startswith("URIs:") for word in line.split()[1:]]
    if os.path.exists("/etc/apt/sources.list"):
        with open("/etc/apt/sources.list") as f:
            uris += [line.split()[1] for line in f if line.startswith("deb ") and len(line.split()) > 2]
    main = [u.rstrip("/") for u in uris if u.rstrip("/").endswith("/debian")]
    assert main, "apt has no Debian archive configured here"
    return main[0]


@pytest.fixture(scope="module")
def suites(tmp_path_factory) -> dict:
    """bubblewrap's upstream sources of each version, fetched from the archive and checked."""
    where = tmp_path_factory.mktemp("bubblewrap")
    found = {}
    for version, _, _, digest in SUITES:
        name = f"bubblewrap_{version}.orig.tar.xz"
        with urllib.request.urlopen(f"{_archive_uri()}/pool/main/b/bubblewrap/{name}", timeout=120) as response:
            data = response.read()
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} is not the one these counts are for"
        (where / name).write_bytes(data)
        subprocess.run(["tar", "-C", str(where), "-xf", str(where / name)], check=True)
        found[version] = where / f"bubblewrap-{version}"
    return found


@pytest.mark.parametrize("version,checks,needed", [(v, c, n) for v, c, n, _ in SUITES])
def test_bubblewraps_own_suite(bwrap_dir, suites, version, checks, needed, tmp_path):
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "BWRAP": "rootsand-bwrap", "BWRAP_MUST_WORK": "1",
           "PATH": f"{bwrap_dir}:{os.environ['PATH']}:/usr/sbin:/sbin",
           # the rootsand-bwrap the suite runs inside another (--uid 0 ...) keeps its state apart: its runtime
           # key not in the test user's home, which later tests expect as tests/run.sh made it, and its runtime
           # directory not /tmp/rootsand-N for the uid it has inside (N = 0: root's name)
           "XDG_STATE_HOME": str(tmp_path / "state"), "XDG_RUNTIME_DIR": str(runtime)}
    done = subprocess.run(["bash", str(suites[version] / "tests" / "test-run.sh")], env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1500)
    lines = done.stdout.splitlines()
    assert f"1..{checks}" in lines
    passed = [line for line in lines if line.startswith("ok")]
    print(f"bubblewrap {version}: {len(passed)} of {checks}")
    assert len(passed) >= needed, (f"{len(passed)} of {checks}; the first failure:\n"
                                   + "\n".join(done.stderr.splitlines()[-25:]))


def test_bubblewraps_seccomp_suite(bwrap_dir, suites, tmp_path):
    """0.12.0's tests/test-seccomp.py: --seccomp and --add-seccomp-fd with programs that libseccomp compiles
    (pyseccomp, the tests' binding of it, under the name the suite imports), against its try-syscall."""
    tests = suites["0.12.0"] / "tests"
    subprocess.run(["gcc", "-o", str(tmp_path / "try-syscall"), str(tests / "try-syscall.c")], check=True)
    (tmp_path / "tests").mkdir()
    os.rename(tmp_path / "try-syscall", tmp_path / "tests" / "try-syscall")
    (tmp_path / "seccomp.py").write_text("from pyseccomp import *  # noqa: F403 - python3-seccomp's name\n")
    env = {**os.environ, "BWRAP": "rootsand-bwrap", "G_TEST_BUILDDIR": str(tmp_path),
           "PATH": f"{bwrap_dir}:{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(tests / "test-seccomp.py")], env=env, cwd=tmp_path,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Ran 6 tests" in done.stderr and "\nOK" in done.stderr, done.stderr[-3000:]
