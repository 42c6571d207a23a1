"""What one sandbox could do to the user's next run, or to the user's terminal and files: each was a real
finding of a review, now a test. The attacker controls everything the default profile makes writable
(the current directory) and the command's own fds."""

import json
import os
import pty
import random
import select
import signal
import subprocess
import termios
import time
import uuid


from conftest import assert_command_failed, read_terminal, rootsand_argv, sandbox

UID = os.getuid()
HOME = os.path.expanduser("~")


def status(text):
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def test_helper_planted_on_path_is_never_run(tmp_path):
    marker = tmp_path / "ran-on-host"
    bindir = tmp_path / ".venv" / "bin"
    bindir.mkdir(parents=True)
    for helper in ("newuidmap", "newgidmap", "slirp4netns", "fuse-overlayfs"):
        (bindir / helper).write_text(f"#!/bin/sh\ntouch {marker}\nexec /usr/bin/{helper} \"$@\"\n")
        (bindir / helper).chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    sandbox("true", opts=["--net", "slirp", "--profile", "build"], env=env, cwd=tmp_path, check_rc=0)
    assert not marker.exists()


def test_a_local_profile_file_is_used_only_when_named_as_a_path(tmp_path):
    (tmp_path / "build.toml").write_text('extends = "default"\n[security]\ncapabilities = "all"\n')
    r = sandbox("cat", "/proc/self/status", opts=["--profile", "build.toml"], cwd=tmp_path, check_rc=0)
    assert int(status(r.stdout)["CapEff"], 16) == 1 << 31  # the built-in build profile (CAP_SETFCAP), not the file
    r = sandbox("cat", "/proc/self/status", opts=["--profile", "./build.toml"], cwd=tmp_path, check_rc=0)
    assert int(status(r.stdout)["CapEff"], 16) != 0  # named explicitly: the user's choice


def test_status_file_symlink_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / "status.json")
    r = sandbox("true", opts=["--json-status", "status.json"], cwd=tmp_path, check_rc=125)
    assert r.stderr.startswith("rootsand: error: --json-status: cannot write status.json")
    assert victim.read_text() == "precious\n"


def test_unwritable_status_file_is_a_clean_error():
    r = sandbox("true", opts=["--json-status", "/nonexistent/s.json"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: --json-status:") and "Traceback" not in r.stderr


def test_untrusted_tmpfs_are_capped_by_the_memory_limit(tmp_path):
    r = sandbox("sh", "-c", "df -B1 --output=size /tmp /dev/shm $HOME . | tail -n +2", opts=["--profile", "untrusted"],
                cwd=tmp_path, check_rc=0)
    sizes = [int(n) for n in r.stdout.split()]
    assert len(sizes) == 4 and all(size <= 1 << 30 for size in sizes), sizes


def _pty_run(args, cwd):
    """rootsand with stdout and stderr on a terminal of our own, stdin from /dev/null."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(rootsand_argv() + args, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            start_new_session=True, cwd=cwd)
    os.close(slave)
    return proc, master


def test_command_cannot_read_or_change_the_users_terminal_through_stderr(tmp_path):
    proc, master = _pty_run(["run", "--timeout", "3", "--", "sh", "-c",
                             "stty raw -echo <&2; echo ready >&2; head -c 5 <&2 > got.txt"], tmp_path)
    try:
        shown = read_terminal(master, b"ready", 20)  # the command runs, and has its stderr set up
        assert b"ready" in shown, (shown, proc.poll())
        os.write(master, b"hunter2\n")  # typed on our terminal, where head would read if it could
        proc.wait(timeout=20)
        shown += read_terminal(master, None, 5)
    finally:
        os.close(master)
    assert proc.returncode == 124, shown  # it never got our keys, so head waited until the timeout
    assert b"rootsand: error: the command ran out of time (3s)" in shown, shown
    assert (tmp_path / "got.txt").read_bytes() == b""  # made by the shell's redirection: head ran, got nothing


def test_stderr_terminal_keeps_its_settings(tmp_path):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    done = subprocess.run(rootsand_argv() + ["run", "--", "sh", "-c", "stty raw -echo <&2; stty raw -echo"],
                          stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, timeout=30, cwd=tmp_path)
    after = termios.tcgetattr(slave)
    shown = read_terminal(master, None, 0)  # rootsand has exited: all it wrote is in the terminal's buffer
    os.close(master)
    os.close(slave)
    assert after == before
    # The first stty changed the sandbox's own terminal (stderr); the second found /dev/null on stdin.
    assert (done.returncode, shown) == (1, b"stty: 'standard input': Inappropriate ioctl for device\r\n")


def test_relay_cannot_be_stalled_past_the_timeout():
    exe = " ".join(rootsand_argv())
    start = time.monotonic()
    done = subprocess.run(["script", "-qec", f"{exe} run --timeout 3 -- sh -c 'stty raw -echo; sleep 20'",
                           "/dev/null"], input="x" * 200_000, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - start < 15
    assert done.returncode == 124


def test_keep_id_setup_leaves_files_the_user_owns(tmp_path):
    sandbox("true", opts=["--user", "keep-id", "--bind", f"/etc/hostname:{tmp_path}/sub/dir/x"], cwd=tmp_path,
            check_rc=0)
    assert os.stat(tmp_path / "sub").st_uid == UID and os.stat(tmp_path / "sub" / "dir").st_uid == UID


def test_file_and_dir_ops_never_change_bound_host_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine\n")
    os.chmod(tmp_path, 0o755)
    for op in ('type = "file"\ndst = "${CWD}/notes.txt"\ncontent = "x"', 'type = "dir"\ndst = "${CWD}"\nmode = "0777"'):
        profile = tmp_path.parent / f"{tmp_path.name}-{uuid.uuid4().hex}.toml"
        profile.write_text(f'extends = "default"\n[[mount]]\n{op}\n')
        r = sandbox("true", opts=["--profile", str(profile)], cwd=tmp_path, check_rc=125)
        assert "would change the user's files" in r.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine\n" and os.stat(tmp_path).st_mode & 0o777 == 0o755


def test_rootfs_runs_in_its_own_root_directory(tmp_path):
    import shutil

    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
    os.symlink("busybox", root / "bin" / "sh")
    r = sandbox("/bin/sh", "-c", "echo $PWD", opts=["--rootfs", str(root), "-e", "PATH=/bin"], cwd=tmp_path, check_rc=0)
    assert r.stdout.strip() == "/"
    assert sorted(os.listdir(root)) == ["bin", "dev", "proc", "tmp"]  # mount points only; no /etc files made


def test_one_sigint_to_the_process_group_reaches_the_command_once(tmp_path):
    # Python's C-level handler writes a byte to the wakeup fd for each delivery: wait for the first (the
    # signal is its own readiness), then for a duplicate. Nothing says that no duplicate is coming: a second
    # after the first is the window it would fall in.
    code = ("import os, select, signal\n"
            "r, w = os.pipe()\n"
            "os.set_blocking(w, False)\n"
            "signal.signal(signal.SIGINT, lambda *a: None)\n"
            "signal.set_wakeup_fd(w)\n"
            "print('ready', flush=True)\n"
            "got = b''\n"
            "if select.select([r], [], [], 10)[0]:\n"
            "    got += os.read(r, 100)\n"
            "    if select.select([r], [], [], 1)[0]:\n"
            "        got += os.read(r, 100)\n"
            "print(len(got))\n")
    proc = subprocess.Popen(rootsand_argv() + ["run", "--", "python3", "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, start_new_session=True,
                            cwd=tmp_path)
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGINT)  # what a ^C on a terminal does
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out, err) == (0, "1\n", "")


def test_running_from_above_home_does_not_show_home(tmp_path):
    parent = os.path.dirname(HOME)
    r = sandbox("sh", "-c", f"ls -A {HOME} | wc -l", cwd=parent, check_rc=0)
    assert r.stdout.strip() == "0"
    assert "holds your home directory" in r.stderr


def test_signals_during_start_never_give_a_traceback():
    rng = random.Random(7)
    for _ in range(25):
        # SIGINT at its default in rootsand: a test run started in the background by a shell without job
        # control inherits it ignored, and rootsand then (rightly, as any program) ignores ^C until it has
        # its own handler, so the sandbox would run to its end.
        proc = subprocess.Popen(rootsand_argv() + ["run", "--", "sleep", "5"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        # Random moments of start-up on purpose: no readiness to wait for, the point is to hit each stage.
        time.sleep(rng.uniform(0.02, 0.25))
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(rng.uniform(0, 0.01))
        _, err = proc.communicate(timeout=20)
        assert "internal error" not in err, err
        if proc.returncode == -signal.SIGINT or (proc.returncode == 1 and "KeyboardInterrupt" in err):
            # Before rootsand's code ran at all: Python's own KeyboardInterrupt in the script's first imports,
            # or (Python 3.13, Debian 13) in its site module, which ends the interpreter with status 1.
            assert "rootsand/" not in err.replace("bin/rootsand", ""), err
        else:
            assert proc.returncode == 130 and "Traceback" not in err, (proc.returncode, err)


def test_io_uring_is_refused():
    code = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "params = ctypes.create_string_buffer(120)\n"
            "print(libc.syscall(425, 4, params), ctypes.get_errno())\n")
    assert sandbox("python3", "-c", code, check_rc=0).stdout.split() == ["-1", "1"]


def test_untrusted_from_above_home_does_not_show_home():
    secret = os.path.join(HOME, f".secret-{uuid.uuid4().hex}")
    with open(secret, "w") as f:
        f.write("secret\n")
    try:
        r = sandbox("cat", secret, opts=["--profile", "untrusted"], cwd=os.path.dirname(HOME))
        assert_command_failed(r, 1, f"cat: {secret}: No such file or directory")
        assert r.stdout == ""
    finally:
        os.unlink(secret)


def test_home_through_a_symlink_is_still_hidden(tmp_path):
    link = tmp_path / "homes"
    os.symlink(os.path.dirname(HOME), link)
    secret = os.path.join(HOME, f".secret-{uuid.uuid4().hex}")
    with open(secret, "w") as f:
        f.write("secret\n")
    try:
        env = dict(os.environ, HOME=str(link / os.path.basename(HOME)))
        r = sandbox("sh", "-c", f"pwd; cat {secret}", cwd=os.path.dirname(HOME), env=env)
        assert_command_failed(r, 1, f"cat: {secret}: No such file or directory")
        assert r.stdout == os.path.dirname(HOME) + "\n"
    finally:
        os.unlink(secret)


def test_status_file_fifo_does_not_hang(tmp_path):
    os.mkfifo(tmp_path / "status.json")
    r = sandbox("true", opts=["--json-status", "status.json"], cwd=tmp_path, check_rc=0, timeout=20)
    assert r.stderr == "rootsand: warning: --json-status: status.json is a FIFO nobody reads: no status is written\n"


def test_status_file_gets_its_exit_line_when_setup_fails(tmp_path):
    sandbox("true", opts=["--json-status", "s.json", "--chdir", "/nowhere"], cwd=tmp_path, check_rc=125)
    lines = [json.loads(line) for line in (tmp_path / "s.json").read_text().splitlines()]
    assert lines[-1] == {"exit-code": 125}


def test_relay_output_to_a_stalled_reader_does_not_beat_the_timeout(tmp_path):
    exe = " ".join(rootsand_argv())
    script = f"({exe} run --timeout 3 -- sh -c 'yes > /dev/tty'; echo rc=$? > {tmp_path}/rc) 2>&1 | sleep 12"
    start = time.monotonic()
    subprocess.run(["script", "-qec", script, "/dev/null"], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    rc = (tmp_path / "rc").read_text().strip()
    assert rc == "rc=124"
    assert time.monotonic() - start < 20


def test_dev_is_read_only_but_its_devices_work():
    r = sandbox("sh", "-c", "touch /dev/x 2>&1; echo data > /dev/null && echo ok; touch /dev/shm/y && echo shm",
                check_rc=0)
    assert r.stdout.splitlines() == ["touch: cannot touch '/dev/x': Read-only file system", "ok", "shm"]


def test_symlink_op_never_writes_into_bound_host_directories(tmp_path):
    os.chmod(tmp_path, 0o755)
    profile = tmp_path.parent / f"{tmp_path.name}-link.toml"
    profile.write_text('extends = "default"\n[[mount]]\ntype = "symlink"\nsrc = "/etc"\ndst = "${CWD}/link"\n')
    r = sandbox("true", opts=["--profile", str(profile)], cwd=tmp_path, check_rc=125)
    assert "would change the user's files" in r.stderr and not os.path.lexists(tmp_path / "link")
