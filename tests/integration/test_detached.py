"""Detached sandboxes: run -d, logs, attach, ps -a and rm."""

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid

import pytest

from conftest import read_terminal, rootsand_argv, run, still_running

LOG_PART = 4 << 20  # runtime/detach.py's


@pytest.fixture
def names():
    """Names for detached sandboxes; each is stopped and removed at the end, whatever the test did."""
    made = []

    def new() -> str:
        made.append(f"d-{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield new
    for name in made:  # one at a time: rm stops at a name that never came to be (a start that failed)
        run(["rm", "-f", name], timeout=60)


def detach(tmp_path, name, *command, opts=()) -> subprocess.CompletedProcess:
    return run(["run", "-d", "--name", name, *opts, "--", *command], cwd=tmp_path, check_rc=0)


def row(name, show_all=True) -> dict | None:
    rows = [r for r in json.loads(run(["ps", "--json", *(["-a"] if show_all else [])], check_rc=0).stdout)
            if r["name"] == name]
    return rows[0] if rows else None


def ended(name) -> dict:
    """The row of `name` once it has ended: `logs -f` returns then."""
    run(["logs", "-f", name], check_rc=0, timeout=60)
    return row(name)


def test_run_d_prints_the_name_once_the_command_runs_and_its_output_goes_to_the_log(tmp_path, names):
    name = names()
    done = detach(tmp_path, name, "sh", "-c", "echo out; echo err >&2; exec sleep 60")
    assert done.stdout == f"{name}\n" and done.stderr == ""
    running = row(name, show_all=False)  # no -a: it runs
    assert running["status"] == "running" and running["detached"] and running["command"][0] == "sh"
    assert os.path.exists(f"/proc/{running['pid']}") and os.path.exists(f"/proc/{running['pid1']}")
    run(["stop", name], check_rc=0)
    gone = ended(name)
    assert gone["status"] == "exited" and gone["exit_code"] == 143 and gone["pid"] is None
    assert gone["ended"] >= time.time() - 60
    logs = run(["logs", name], check_rc=0)
    assert sorted(logs.stdout.splitlines()) == ["err", "out"]  # stderr is in the log too, in the order written
    assert name not in run(["ps", "-q"], check_rc=0).stdout.split()  # ended: only with -a
    table = [line for line in run(["ps", "-a"], check_rc=0).stdout.splitlines() if line.split()[0] == name]
    assert "exited(143)" in table[0].split()


def test_the_exit_status_is_kept_until_rm_and_the_name_with_it(tmp_path, names):
    name = names()
    detach(tmp_path, name, "sh", "-c", "exit 3")
    assert ended(name)["exit_code"] == 3
    again = run(["run", "-d", "--name", name, "--", "true"], cwd=tmp_path, check_rc=125)
    assert again.stderr.startswith(f"rootsand: error: the name {name} is kept by a detached sandbox")
    foreground = run(["run", "--name", name, "--", "true"], cwd=tmp_path, check_rc=125)
    assert foreground.stderr.startswith(f"rootsand: error: the name {name} is kept by a detached sandbox")
    assert f"rootsand rm {name}" in foreground.stderr
    assert run(["rm", name], check_rc=0).stdout == f"{name}\n"
    assert row(name) is None
    assert run(["logs", name], check_rc=125).stderr.startswith(f"rootsand: error: no detached sandbox named {name}")
    run(["run", "--name", name, "--", "true"], cwd=tmp_path, check_rc=0)  # free again


def test_rm_refuses_a_running_sandbox_unless_forced(tmp_path, names):
    name = names()
    detach(tmp_path, name, "sleep", "60")
    refused = run(["rm", name], check_rc=125)
    assert refused.stderr.startswith(f"rootsand: error: {name} is running")
    pid1 = row(name)["pid1"]
    assert run(["rm", "-f", name], check_rc=0).stdout == f"{name}\n"
    assert still_running([pid1], 10) == [] and row(name) is None


def test_rm_all_removes_the_ended_ones_and_leaves_the_running(tmp_path, names):
    done, running = names(), names()
    detach(tmp_path, done, "true")
    detach(tmp_path, running, "sleep", "60")
    ended(done)
    removed = run(["rm", "--all"], check_rc=0).stdout.split()
    assert done in removed and running not in removed
    assert row(done) is None and row(running)["status"] == "running"


def test_a_start_that_fails_is_reported_by_run_d_and_leaves_nothing(tmp_path, names):
    name = names()
    missing = run(["run", "-d", "--name", name, "--", "no-such-command-x"], cwd=tmp_path, check_rc=127)
    assert missing.stdout == "" and "no-such-command-x: command not found" in missing.stderr
    assert row(name) is None
    assert not [f for f in os.listdir(detached_dir()) if f.startswith(name + ".")]
    # After the fork too: the name taken by a running sandbox is found by the launcher in the background
    holder = names()
    detach(tmp_path, holder, "sleep", "60")
    taken = run(["run", "-d", "--name", holder, "--", "true"], cwd=tmp_path, check_rc=125)
    assert taken.stderr.startswith(f"rootsand: error: the name {holder} is kept by a detached sandbox")


def detached_dir() -> str:
    from rootsand.ops import registry  # the same user and environment as the commands': the same directory

    return registry.detached_dir()


def test_logs_f_follows_the_output_until_the_sandbox_ends(tmp_path, names):
    name = names()
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    detach(tmp_path, name, "sh", "-c", "echo first; read x < gate; echo second; exit 4")
    follower = subprocess.Popen(rootsand_argv() + ["logs", "-f", name], stdout=subprocess.PIPE, text=True)
    assert select.select([follower.stdout], [], [], 30)[0] and follower.stdout.readline() == "first\n"
    assert follower.poll() is None  # it waits for more
    with open(gate, "w") as f:
        f.write("go\n")
    assert follower.stdout.read() == "second\n" and follower.wait(timeout=30) == 0
    assert row(name)["exit_code"] == 4


def test_the_log_keeps_the_last_output_within_its_bound(tmp_path, names):
    name = names()
    detach(tmp_path, name, "seq", "1", "2000000")  # 14.9 MB
    ended(name)
    logs = run(["logs", name], check_rc=0, timeout=120).stdout
    assert LOG_PART < len(logs) <= 2 * LOG_PART
    assert logs.endswith("\n1999999\n2000000\n")
    kept = [f for f in os.listdir(detached_dir()) if f.startswith(name + ".log")]
    assert sorted(kept) == [f"{name}.log", f"{name}.log.1"]


def test_logs_on_a_terminal_pass_the_terminal_filter(tmp_path, names):
    """What the sandbox wrote may be meant for the user's terminal (a clipboard write, OSC 52): `logs` on a
    terminal filters it as the relay does; to a pipe it gives the bytes as they are."""
    name = names()
    detach(tmp_path, name, "printf", "before\\033]52;c;aGVsbG8=\\007after\\n")
    ended(name)
    assert run(["logs", name], check_rc=0).stdout == "before\x1b]52;c;aGVsbG8=\x07after\n"
    received, status = on_terminal(rootsand_argv() + ["logs", name], b"")
    assert status == 0 and b"before" in received and b"after" in received
    assert b"\x1b]52" not in received and b"aGVsbG8" not in received


def on_terminal(argv, keys: bytes, until: bytes | None = None, then: bytes = b"", seconds: float = 30):
    """Run argv on a pty of its own; type `keys`, and `then` once `until` has been seen. What it shows, and its
    exit status."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            env=dict(os.environ, TERM="xterm"))
    os.close(slave)
    try:
        os.write(master, keys)
        received = read_terminal(master, until, seconds)
        if until and until in received:
            os.write(master, then)
            received += read_terminal(master, None, seconds)
        return received, proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_attach_takes_the_terminal_and_ctrl_p_ctrl_q_leaves_it_running(tmp_path, names):
    name = names()
    detach(tmp_path, name, "sh", "-c", "tty; while read x; do [ \"$x\" = end ] && exit 5; echo got $x; done",
           opts=["-t"])
    received, status = on_terminal(rootsand_argv() + ["attach", name], b"hello\n", until=b"got hello",
                                   then=b"\x10\x11")
    assert status == 0 and b"got hello" in received and f"detached from {name}".encode() in received
    assert row(name)["status"] == "running"
    received, status = on_terminal(rootsand_argv() + ["attach", name], b"again\n", until=b"got again",
                                   then=b"end\n")
    assert status == 5 and b"got again" in received  # the command's status, once it has ended
    assert ended(name)["exit_code"] == 5
    assert run(["logs", name], check_rc=0).stdout.startswith("/dev/pts/0\n")  # before the first attach (CR LF read as text)


def test_a_second_attach_is_refused_while_one_holds_the_terminal(tmp_path, names):
    name = names()
    detach(tmp_path, name, "sh", "-c", "while read x; do echo got $x; done", opts=["-t"])
    master, slave = pty.openpty()
    first = subprocess.Popen(rootsand_argv() + ["attach", name], stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    os.close(slave)
    try:
        os.write(master, b"one\n")
        assert b"got one" in read_terminal(master, b"got one", 30)
        second = run(["attach", name], check_rc=125)
        assert second.stderr.startswith(f"rootsand: error: {name} is attached elsewhere")
    finally:
        first.kill()
        first.wait(timeout=30)
        os.close(master)


def test_attach_to_a_sandbox_without_a_terminal_is_refused(tmp_path, names):
    name = names()
    detach(tmp_path, name, "sleep", "60")
    refused = run(["attach", name], check_rc=125)
    assert refused.stderr.startswith(f"rootsand: error: {name} has no terminal to attach to")
    assert f"rootsand logs -f {name}" in refused.stderr


def test_a_killed_launcher_shows_as_killed_and_leaves_nothing_running(tmp_path, names):
    name = names()
    detach(tmp_path, name, "sleep", "60", opts=["-t"])
    before = row(name)
    os.kill(before["pid"], 9)
    assert still_running([before["pid1"]], 20) == []  # the sandbox died with its launcher
    after = row(name)
    assert after["status"] == "killed" and after["pid"] is None
    assert "killed" in [line for line in run(["ps", "-a"], check_rc=0).stdout.splitlines()
                        if line.startswith(name)][0]
    refused = run(["attach", name], check_rc=125)
    assert refused.stderr.startswith(f"rootsand: error: cannot attach to {name}: its launcher is gone (killed)")
    assert run(["rm", name], check_rc=0).stdout == f"{name}\n"


def test_tty_gives_the_command_a_terminal_when_none_is_at_hand(tmp_path):
    done = run(["run", "-t", "--", "sh", "-c", "tty; test -t 0 && test -t 2 && echo all three"], cwd=tmp_path,
               check_rc=0, stdin=subprocess.DEVNULL)
    assert done.stdout.splitlines() == ["/dev/pts/0", "all three"]  # (the pty's CR LF, read as text)
    plain = run(["run", "--", "sh", "-c", "tty"], cwd=tmp_path, check_rc=1, stdin=subprocess.DEVNULL)
    assert plain.stdout == "not a tty\n"
    (tmp_path / "same-session.toml").write_text('extends = "default"\n[security]\nnew_session = false\n')
    refused = run(["run", "-t", "-p", "./same-session.toml", "--", "true"], cwd=tmp_path, check_rc=125)
    assert refused.stderr.startswith("rootsand: error: --tty needs a session of the command's own")


def test_only_a_process_outside_every_user_namespace_but_ours_takes_the_terminal(tmp_path, names):
    """Sandboxes never see the runtime directory (test_the_runtime_directory_is_hidden_wherever_a_bind_shows_it);
    the launcher checks all the same: a process in another user namespace that reaches the socket (here one of
    `rootsand unshare`, which sees the host's files) is refused, and the terminal stays with the launcher."""
    victim = names()
    detach(tmp_path, victim, "sh", "-c", "while read x; do echo got $x; done", opts=["-t"])
    socket_path = os.path.join(detached_dir(), f"{victim}.attach")
    probe = ("import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             f"s.connect({socket_path!r})\n"
             "msg, fds, _, _ = socket.recv_fds(s, 1, 1)\n"
             "print('fds', len(fds), msg)\n")
    done = run(["unshare", "--", sys.executable, "-c", probe], cwd=tmp_path, check_rc=0)
    assert done.stdout == "fds 0 b'D'\n"
    inside = run(["unshare", "--", *rootsand_argv(), "attach", victim], cwd=tmp_path, check_rc=125)
    assert inside.stderr.startswith(f"rootsand: error: {victim} can be attached only from outside sandboxes")
    again, status = on_terminal(rootsand_argv() + ["attach", victim], b"still\n", until=b"got still",
                                then=b"\x10\x11")
    assert status == 0 and b"got still" in again  # the refusals left the terminal to the launcher


def test_the_runtime_directory_is_hidden_wherever_a_bind_shows_it(tmp_path, names):
    """A profile may bind $XDG_RUNTIME_DIR (a desktop's sockets) or /tmp: rootsand's runtime directory in it
    (the registry's plans, detached sandboxes' logs and terminals, the monitors' FIFOs) is an empty tmpfs of
    the sandbox's own inside (a rootsand in it keeps its state there), and a bind of that directory itself,
    or of what is in it, is refused."""
    victim = names()
    detach(tmp_path, victim, "sh", "-c", "echo secret-output; exec sleep 60", opts=["-t"])
    runtime = os.path.dirname(detached_dir())
    parent = os.path.dirname(runtime)
    shown = run(["run", "--bind", parent, "--", "sh", "-c",
                 f"ls -A {runtime} | wc -l; cat {runtime}/detached/*.log; touch {runtime}/planted-by-x; "
                 f"stat -c %a {runtime}"], cwd=tmp_path, check_rc=0)
    assert shown.stdout == "0\n700\n"  # nothing there to read, list or connect to; its own, private
    assert "secret-output" not in shown.stdout + shown.stderr
    assert not os.path.lexists(os.path.join(runtime, "planted-by-x"))  # what it wrote there stayed inside
    for path in (runtime, detached_dir()):
        refused = run(["run", "--ro-bind", path, "--", "true"], cwd=tmp_path, check_rc=125)
        assert refused.stderr.startswith(f"rootsand: error: --ro-bind {path}: {path} is ")
        assert "rootsand's runtime directory" in refused.stderr.splitlines()[0]


def test_a_record_left_by_a_killed_caller_is_listed_and_removable(tmp_path, names):
    """A `run -d` killed after it took the name, before its launcher ran: the record it made (whole: written
    aside, then linked) is a killed one's, which ps -a shows and rm removes (attack 8, d01)."""
    for content in (json.dumps({"name": "", "status": "starting", "created": time.time(), "command": ["true"]}), ""):
        name = names()  # a record as a caller killed before its launcher ran leaves it; an empty one, as older ones did
        with open(os.path.join(detached_dir(), f"{name}.json"), "w") as f:
            f.write(content.replace('"name": ""', f'"name": "{name}"'))
        taken = run(["run", "-d", "--name", name, "--", "true"], cwd=tmp_path, check_rc=125)
        assert f"'rootsand ps -a' shows it; 'rootsand rm {name}' removes it" in taken.stderr
        assert row(name)["status"] == "killed"
        assert run(["rm", name], check_rc=0).stdout == f"{name}\n"
        detach(tmp_path, name, "true")


def test_a_log_removed_under_a_running_sandbox_neither_stops_nor_hangs_it(tmp_path, names):
    """The log's copier drains the pipe whatever happens to the log (a part removed, a full file system):
    else the command blocks on its next write for good (attack 8, d02 and d03)."""
    name = names()
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    detach(tmp_path, name, "sh", "-c", "echo first; read x < gate; seq 1 1000000; echo last; exit 6")
    os.unlink(os.path.join(detached_dir(), f"{name}.log"))  # the copier's next rotation finds no log to rename
    with open(gate, "w") as f:
        f.write("go\n")
    assert ended(name)["exit_code"] == 6
    assert run(["logs", name], check_rc=0, timeout=120).stdout.endswith("1000000\nlast\n")


def test_the_daemon_keeps_nothing_of_the_caller_and_its_lines_go_to_the_log(tmp_path, names):
    """run -d returns, and what it was given closes with it: the caller's stderr (even after -v's lines,
    which errors.say writes through a description of its own) and any other fd it had (a harness's pipe, a
    lock); the launcher's lines are in the log (attack 8, d05, d06)."""
    name = names()
    r, w = os.pipe()
    try:
        proc = subprocess.Popen(rootsand_argv() + ["run", "-d", "-v", "--name", name, "--", "sleep", "60"],
                                cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, pass_fds=(w,), text=True)
        os.close(w)
        w = None
        out, err = proc.communicate(timeout=30)  # both pipes at their end: nothing of ours holds them
        assert proc.returncode == 0 and out == f"{name}\n", err
        assert select.select([r], [], [], 30)[0] and os.read(r, 1) == b""  # fd 3+ closed too, while it runs
        assert row(name)["status"] == "running"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    run(["stop", name], check_rc=0)
    logged = run(["logs", name], check_rc=0).stdout.splitlines()  # the launcher's -v lines went to the log
    assert logged[-1].startswith("rootsand: ") and logged[-1].endswith("s sandbox ended with status 143")


def test_a_starting_sandbox_is_neither_killed_nor_removable(tmp_path, names):
    """A record whose `run -d` caller still runs (before its launcher has published) is starting: ps -a says
    so, and rm (--all) leaves it, else a second sandbox could take the name mid-start (attack 8, d08)."""
    name = names()
    with open(f"/proc/{os.getpid()}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    with open(os.path.join(detached_dir(), f"{name}.json"), "w") as f:
        json.dump({"name": name, "status": "starting", "created": time.time(), "command": ["true"],
                   "caller": {"pid": os.getpid(), "start": start}}, f)
    assert row(name)["status"] == "starting"
    refused = run(["rm", name], check_rc=125)
    assert refused.stderr.startswith(f"rootsand: error: {name} is starting")
    assert name not in run(["rm", "--all"], check_rc=0).stdout.split()
    os.unlink(os.path.join(detached_dir(), f"{name}.json"))


def test_attach_takes_a_terminal_only_from_the_launcher_the_record_names(tmp_path, names):
    """A socket put in place of NAME.attach (by whoever could write the runtime directory) gets none of the
    keys: the peer must be the recorded launcher, the fd a pty master (attack 8, d09)."""
    import socket

    name = names()
    detach(tmp_path, name, "sleep", "60", opts=["-t"])
    path = os.path.join(detached_dir(), f"{name}.attach")
    os.unlink(path)
    fake = socket.socket(socket.AF_UNIX)
    fake.bind(path)
    fake.listen(1)
    master, slave = pty.openpty()
    proc = subprocess.Popen(rootsand_argv() + ["attach", name], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        conn, _ = fake.accept()
        socket.send_fds(conn, [b"M"], [master])
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 125 and err.startswith(f"rootsand: error: cannot attach to {name}: {path} is "
                                                         f"served by pid {os.getpid()}, not by the sandbox's launcher")
        conn.close()
    finally:
        fake.close()
        os.close(master)
        os.close(slave)
        if proc.poll() is None:
            proc.kill()
