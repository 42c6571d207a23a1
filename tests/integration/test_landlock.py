"""Landlock, the second wall, on the real kernel: it holds on its own where the mounts would let the command
write, it keeps the host's abstract Unix sockets and processes out of reach, and `exec` gets the same."""

import os
import select
import signal
import socket
import subprocess
import uuid

from conftest import assert_command_failed, command_stderr, rootsand_argv, run, sandbox

REVOKE = "ROOTSAND_TEST_LANDLOCK_READ_ONLY"  # security/landlockrules.py: takes write rights away, nothing else


def test_a_directory_the_mounts_leave_writable_is_still_refused_by_landlock(tmp_path):
    """As after a mistake in the mount layer: /data is a read-write bind, but the ruleset grants no write
    there (the tests' switch takes it away), and Landlock alone refuses; without Landlock the write goes
    through to the host."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "old").write_text("old\n")
    env = {**os.environ, REVOKE: "/data"}
    script = "echo new > /data/old; echo made > /data/new; rm /data/old; mkdir /data/d; cat /data/old"
    done = sandbox("sh", "-c", script, opts=["--profile", "untrusted", "--bind", f"{data}:/data"], env=env)
    stderr = command_stderr(done)
    assert done.returncode == 0 and done.stdout == "old\n", done.stderr
    assert len(stderr) == 4 and all("Permission denied" in line for line in stderr), stderr
    assert sorted(os.listdir(data)) == ["old"] and (data / "old").read_text() == "old\n"
    # reading and running stay allowed there
    assert sandbox("cat", "/data/old", opts=["--profile", "untrusted", "--bind", f"{data}:/data"], env=env,
                   check_rc=0).stdout == "old\n"

    done = sandbox("sh", "-c", script.removesuffix("; cat /data/old"),
                   opts=["--profile", "untrusted", "--bind", f"{data}:/data", "--landlock", "off"], env=env)
    assert (done.returncode, command_stderr(done)) == (0, [])
    assert sorted(os.listdir(data)) == ["d", "new"] and (data / "new").read_text() == "made\n"


def test_the_dry_run_shows_the_ruleset_and_what_the_switch_took_away(tmp_path):
    env = {**os.environ, REVOKE: "/data"}
    listing = run(["run", "--profile", "untrusted", "--bind", f"{tmp_path}:/data", "--dry-run", "-v", "--", "true"],
                  env=env, check_rc=0).stderr.splitlines() + run(
        ["run", "--profile", "untrusted", "--bind", f"{tmp_path}:/data", "--dry-run", "-v", "--", "true"],
        env=env, check_rc=0).stdout.splitlines()
    data = next(line for line in listing if line.startswith("    landlock /data "))
    assert data.split()[2] == "execute" and f"(write revoked: {REVOKE})" in data
    assert "  landlock: on; scoped: abstract unix socket, signal" in listing


def test_the_command_writes_where_the_mounts_let_it_and_nowhere_else(tmp_path):
    """untrusted under Landlock: the throw-away copy of the current directory, /tmp, $HOME's tmpfs and the
    devices work as without it; /dev/stdout may be opened again where it is a file of the caller's."""
    (tmp_path / "f").write_text("x\n")
    script = ("echo a > f && echo b > /tmp/b && echo c > $HOME/c && echo d > /dev/null && mkfifo /tmp/p"
              " && echo 0 > /proc/self/oom_score_adj && cat f /tmp/b $HOME/c && echo out >> /dev/stdout")
    out = tmp_path.parent / f"{tmp_path.name}.out"
    with open(out, "w") as stdout:
        done = subprocess.run(rootsand_argv() + ["run", "--profile", "untrusted", "--", "sh", "-c", script],
                              cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, text=True,
                              timeout=60)
    assert (done.returncode, command_stderr(done)) == (0, [])
    assert out.read_text() == "a\nb\nc\nout\n"
    out.unlink()
    assert (tmp_path / "f").read_text() == "x\n"  # untrusted's overlay: thrown away
    # the host's /dev/null as stdin, opened again
    assert sandbox("sh", "-c", "cat /dev/stdin && echo read", opts=["--profile", "untrusted"], check_rc=0).stdout \
        == "read\n"


def test_a_host_abstract_unix_socket_is_out_of_reach_with_net_host():
    """--net host shares the host's network namespace, and with it every abstract socket of the host (X,
    D-Bus, agents): Landlock's scope refuses the connection, which goes through without it."""
    name = f"rootsand-test-{uuid.uuid4().hex[:8]}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(4)
    try:
        client = ("import socket, sys\n"
                  "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                  "try:\n    s.connect('\\0' + sys.argv[1])\nexcept OSError as e:\n    sys.exit(e.strerror)\n"
                  "print('connected')\n")
        refused = sandbox("python3", "-c", client, name, opts=["--net", "host", "--profile", "untrusted"])
        assert_command_failed(refused, 1, "Operation not permitted")
        scoped = sandbox("python3", "-c", client, name, opts=["--net", "host"])  # default: scope-only
        assert_command_failed(scoped, 1, "Operation not permitted")
        allowed = sandbox("python3", "-c", client, name, opts=["--net", "host", "--profile", "untrusted",
                                                                "--landlock", "off"], check_rc=0)
        assert allowed.stdout == "connected\n"
        assert select.select([listener], [], [], 10)[0]  # the connection that went through is there
    finally:
        listener.close()


def test_a_process_outside_the_sandbox_cannot_be_signalled():
    """The PID namespace hides the host's processes; what is left outside Landlock's domain is rootsand's
    PID 1, which passes a signal it gets on to the command. The scope refuses it (also in scope-only)."""
    script = "kill -USR1 1 || exit 3; sleep 30"
    for opts in (["--profile", "untrusted"], []):
        done = sandbox("sh", "-c", script, opts=opts)
        assert done.returncode == 3 and len([line for line in command_stderr(done) if line]) == 1, done
        assert "not permitted" in done.stderr
    done = sandbox("sh", "-c", script, opts=["--profile", "untrusted", "--landlock", "off"])
    assert done.returncode == 128 + signal.SIGUSR1  # passed on to the command, which dies of it


def test_exec_gets_the_same_ruleset(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    name = f"t-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, REVOKE: "/data"}
    proc = subprocess.Popen(rootsand_argv() + ["run", "--name", name, "--profile", "untrusted", "--bind",
                                               f"{data}:/data", "--", "sh", "-c", "echo ready; exec sleep 120"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout.readline() == "ready\n", proc.stderr.read()
        # exec is started without the switch: the ruleset comes from the recorded plan
        done = run(["exec", name, "--", "sh", "-c", "echo x > /tmp/ok && cat /tmp/ok && echo y > /data/no"],
                   cwd="/")
        assert done.returncode == 2 and done.stdout == "x\n", done
        assert len(command_stderr(done)) == 1 and "Permission denied" in done.stderr
        assert os.listdir(data) == []
        # a domain of its own, without the signal scope: it may signal the sandbox's command (pid 2)
        run(["exec", name, "--", "kill", "-0", "2"], cwd="/", check_rc=0)
        listing = run(["inspect", name], check_rc=0).stdout.splitlines()
        assert "landlock: on; scoped: abstract unix socket, signal" in listing
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_link_planted_on_the_way_to_a_mount_point_moves_no_rights_in_exec(tmp_path):
    """exec takes the rules' paths in a sandbox whose command runs: it may have moved the directory that holds a
    mount point and put a link to / in its place, which must not carry the write rights of that mount to all
    of the root (here to /data, which the rules keep read-only)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "data").mkdir()
    name = f"t-{uuid.uuid4().hex[:10]}"
    plant = "mv /tmp/a /tmp/c && mkdir /tmp/a && ln -s / /tmp/a/b && echo ready && exec sleep 120"
    proc = subprocess.Popen(rootsand_argv() + ["run", "--name", name, "--profile", "untrusted",
                                               "--bind", f"{tmp_path}/d:/tmp/a/b", "--bind", f"{tmp_path}/data:/data",
                                               "--", "sh", "-c", plant],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env={**os.environ, REVOKE: "/data"})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready and proc.stdout.readline() == "ready\n", proc.stderr.read()
        done = run(["exec", name, "--", "sh", "-c", "echo x > /data/f"], cwd="/")
        assert done.returncode == 2 and "Permission denied" in done.stderr, done
        assert os.listdir(tmp_path / "data") == []
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_nested_sandboxes_keep_working_in_the_default_profile():
    """default is scope-only: a nested user and mount namespace may still mount."""
    done = sandbox("unshare", "-rm", "sh", "-c", "mount -t tmpfs none /tmp && echo mounted", check_rc=0)
    assert done.stdout == "mounted\n"
    refused = sandbox("unshare", "-rm", "sh", "-c", "mount -t tmpfs none /tmp && echo mounted",
                      opts=["--landlock", "on"])
    assert refused.returncode != 0 and refused.stdout == "" and command_stderr(refused), refused  # mount refused


def test_doctor_prints_the_landlock_abi():
    lines = run(["doctor"]).stdout.splitlines()
    line = next(line for line in lines if line.split()[1:2] == ["landlock"])
    assert line.split()[0] == "ok" and line.split()[2] == "ABI", line
