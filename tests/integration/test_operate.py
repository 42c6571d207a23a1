"""Operating sandboxes: the registry, ps, exec, inspect, stop, the namespace views and completion."""

import json
import os
import re
import select
import signal
import subprocess
import time
import uuid

import pytest

from conftest import rootsand_argv, run, sandbox


class Running:
    """A named sandbox running COMMAND in the background, up once it has printed its first line."""

    def __init__(self, tmp_path, *command, opts=(), name=None):
        self.name = name or f"t-{uuid.uuid4().hex[:10]}"
        self.proc = subprocess.Popen(rootsand_argv() + ["run", "--name", self.name, *opts, "--", *command],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=tmp_path)
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        assert ready and self.proc.stdout.readline().strip() == "ready", self.proc.stderr.read()
        # The registry entry is written before the command runs: it is there once the command speaks.

    def entry(self) -> dict:
        deadline = time.monotonic() + 10
        while True:  # published when PID 1 reports, which is before the command runs, in practice always
            rows = [r for r in json.loads(run(["ps", "--json"], check_rc=0).stdout) if r["name"] == self.name]
            if rows or time.monotonic() > deadline:
                break
        assert len(rows) == 1, rows
        return rows[0]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


@pytest.fixture
def box(tmp_path):
    running = Running(tmp_path, "sh", "-c", "echo ready; exec sleep 120")
    yield running
    running.close()


def test_a_named_sandbox_is_in_ps_and_its_name_is_taken(tmp_path, box):
    row = box.entry()
    assert row["profile"] == "default" and row["command"] == ["sh", "-c", "echo ready; exec sleep 120"]
    assert row["status"] == "running" and row["net"] == "none" and row["age_seconds"] >= 0
    assert row["pid"] == row["launcher"] == box.proc.pid  # the launcher: the process to signal
    with open(f"/proc/{row['pid1']}/status") as f:  # PID 1 on the host, the launcher's child
        assert f"PPid:\t{box.proc.pid}\n" in f.read()
    table = run(["ps"], check_rc=0).stdout.splitlines()
    assert table[0].split() == ["NAME", "PID", "PROFILE", "NET", "AGE", "STATUS", "COMMAND"]
    assert any(line.split()[0] == box.name for line in table[1:])
    again = sandbox("true", opts=["--name", box.name], cwd=tmp_path, check_rc=125)
    assert again.stderr.startswith(f"rootsand: error: a sandbox named {box.name} is already running")


def test_ps_lists_by_name_whatever_the_order_they_started_in(tmp_path):
    tag = uuid.uuid4().hex[:8]
    boxes = [Running(tmp_path, "sh", "-c", "echo ready; exec sleep 120", name=f"{letter}-{tag}") for letter in "cab"]
    try:
        names = [r["name"] for r in json.loads(run(["ps", "--json"], check_rc=0).stdout) if r["name"].endswith(tag)]
        assert names == [f"a-{tag}", f"b-{tag}", f"c-{tag}"]
        table = [line.split()[0] for line in run(["ps"], check_rc=0).stdout.splitlines()[1:]]
        assert [n for n in table if n.endswith(tag)] == names and table == sorted(table)
    finally:
        for running in boxes:
            running.close()


def test_exec_joins_the_sandbox_as_its_command_runs(tmp_path, box):
    (tmp_path / "mine.txt").write_text("in the directory\n")
    script = ("hostname; cat mine.txt; ls /proc | grep -c '^[0-9]'; echo x > written.txt; "
              "grep -E '^(Seccomp|NoNewPrivs|CapEff|Uid|Groups):' /proc/self/status")
    inside = run(["exec", box.name, "--", "sh", "-c", script], cwd="/", check_rc=0).stdout.splitlines()
    assert inside[0] == "rootsand" and inside[1] == "in the directory"
    assert int(inside[2]) <= 6  # the sandbox's own PID namespace: a handful of pids
    assert (tmp_path / "written.txt").read_text() == "x\n"
    exec_status = dict(line.split(":\t", 1) for line in inside[3:])
    sandboxed = sandbox("grep", "-E", "^(Seccomp|NoNewPrivs|CapEff|Uid|Groups):", "/proc/self/status", cwd=tmp_path,
                        check_rc=0).stdout.splitlines()
    assert exec_status == dict(line.split(":\t", 1) for line in sandboxed)  # the same as the sandbox's command
    # No supplementary group: exec joins with its caller's, which open the host's files of those groups
    assert os.getgroups() and exec_status["Groups"].strip() == ""


@pytest.mark.parametrize("net", ["none", "host", "slirp", "proxy"])
def test_exec_joins_a_sandbox_of_every_network_mode(tmp_path, net):
    """exec joins the namespaces the sandbox made, and only those: with --net host the network is the
    host's, which exec's caller is in already (joining it was 'setns: Operation not permitted')."""
    running = Running(tmp_path, "sh", "-c", "echo ready; exec sleep 120", opts=["--net", net])
    try:
        inside = run(["exec", running.name, "--", "sh", "-c", "hostname; readlink /proc/self/ns/net"], cwd="/",
                     check_rc=0)
        assert inside.stderr == ""
        hostname, netns = inside.stdout.split()
        assert hostname == "rootsand"
        assert (netns == os.readlink("/proc/self/ns/net")) == (net == "host")
        info = json.loads(run(["inspect", "--json", running.name], check_rc=0).stdout)
        assert ("net" in info["namespaces"]) == (net != "host"), info["namespaces"]  # the sandbox's own only
    finally:
        running.close()


def test_exec_with_a_terminal_runs_an_interactive_shell(tmp_path, box):
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(rootsand_argv() + ["exec", box.name, "--", "sh"], stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True, env=dict(os.environ, TERM="xterm", PS1="$ "))
    os.close(slave)
    os.write(master, b"tty; echo $((6*7)); exit 3\n")
    received = b""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and select.select([master], [], [], 1)[0]:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        received += data
    os.close(master)
    assert proc.wait(timeout=20) == 3
    assert b"/dev/pts/" in received and b"42" in received


def test_inspect_reports_what_the_sandbox_sees(tmp_path, box):
    info = json.loads(run(["inspect", box.name, "--json"], check_rc=0).stdout)
    links = run(["exec", box.name, "--", "sh", "-c",
                 "for n in user mnt uts ipc net cgroup pid; do readlink /proc/self/ns/$n; done"],
                check_rc=0).stdout.split()
    names = {"user": "user", "mnt": "mount", "uts": "uts", "ipc": "ipc", "net": "net", "cgroup": "cgroup",
             "pid": "pid"}
    for link in links:
        kind, inode = link.split(":")
        assert info["namespaces"][names[kind]] == int(inode.strip("[]")), link
    usr = [m for m in info["mounts"] if m["destination"] == "/usr"]
    assert usr and "ro" in usr[0]["options"]
    assert info["uid_map"][0] == [0, os.getuid(), 1]
    assert [i for i in info["network"]["interfaces"] if i["name"] == "lo"][0]["addresses"][0] == "127.0.0.1/8"
    assert info["plan"]["name"] == box.name and info["plan"]["argv"] == ["sh", "-c", "echo ready; exec sleep 120"]


def test_inspect_shows_the_slirp_address(tmp_path):
    running = Running(tmp_path, "sh", "-c", "echo ready; exec sleep 120", opts=["--net", "slirp"])
    try:
        info = json.loads(run(["inspect", running.name, "--json"], check_rc=0).stdout)
    finally:
        running.close()
    tap = [i for i in info["network"]["interfaces"] if i["name"] == "tap0"]
    assert tap and "10.0.2.100/24" in tap[0]["addresses"]


def test_stop_ends_a_command_that_traps_sigterm(tmp_path):
    running = Running(tmp_path, "sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 120 & wait")
    try:
        run(["stop", running.name], check_rc=0)
        assert running.proc.wait(timeout=20) == 7
        assert "got TERM" in running.proc.stdout.read()
    finally:
        running.close()
    assert running.name not in run(["ps", "-q"], check_rc=0).stdout.split()


def test_stop_kills_a_command_that_ignores_sigterm_after_the_grace_period(tmp_path):
    running = Running(tmp_path, "sh", "-c", "trap '' TERM; echo ready; while :; do sleep 1; done")
    try:
        start = time.monotonic()
        run(["stop", "--time", "1", running.name], check_rc=0)
        assert time.monotonic() - start >= 1
        assert running.proc.wait(timeout=20) == 128 + signal.SIGKILL
    finally:
        running.close()
    assert running.name not in run(["ps", "-q"], check_rc=0).stdout.split()


def test_stop_of_no_such_sandbox_is_125():
    r = run(["stop", "no-such-sandbox-x"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: no sandbox named no-such-sandbox-x is running")


def test_an_entry_whose_launcher_was_killed_disappears(tmp_path):
    running = Running(tmp_path, "sh", "-c", "echo ready; exec sleep 120")
    running.proc.kill()
    running.proc.wait(timeout=20)
    assert running.name not in run(["ps", "-q"], check_rc=0).stdout.split()


def test_a_stale_entry_whose_pid_is_now_another_process_is_never_signalled(tmp_path):
    """An entry made by hand: its pids belong to an unrelated process of the user, with another start time."""
    victim = subprocess.Popen(["sleep", "120"])
    try:
        registry = os.path.join(os.environ.get("XDG_RUNTIME_DIR") and os.path.join(os.environ["XDG_RUNTIME_DIR"],
                                "rootsand") or f"/tmp/rootsand-{os.getuid()}", "sandboxes")
        os.makedirs(registry, mode=0o700, exist_ok=True)
        fake = {"name": "stale-x", "status": "running", "created": time.time(),
                "launcher": {"pid": victim.pid, "start": 1}, "setup": {"pid": victim.pid, "start": 1},
                "pid1": {"pid": victim.pid, "start": 1}, "namespaces": {}}
        with open(os.path.join(registry, "stale-x.json"), "w") as f:
            json.dump(fake, f)
        assert "stale-x" not in run(["ps", "-q"], check_rc=0).stdout.split()
        run(["stop", "stale-x"], check_rc=125)
        assert victim.poll() is None  # never signalled
        assert not os.path.exists(os.path.join(registry, "stale-x.json"))
    finally:
        victim.kill()
        victim.wait()


def test_ns_diff_between_the_test_and_a_sandbox(box):
    r = run(["ns", "diff", str(os.getpid()), box.name], check_rc=0)
    verdicts = {line.split()[0]: line.split()[1] for line in r.stdout.splitlines()[:-1]}
    for kind in ("user", "pid", "mnt", "uts", "ipc", "net", "cgroup"):
        assert verdicts[kind] == "different", (kind, r.stdout)
    assert verdicts["time"] == "shared"
    assert r.stdout.splitlines()[-1] == "shared: 2  different: 8"


def test_ns_list_names_the_sandbox_of_a_network_namespace(box):
    rows = json.loads(run(["ns", "list", "-t", "net", "--json"], check_rc=0).stdout)
    mine = [row for row in rows if row["sandbox"] == box.name]
    assert len(mine) == 1 and mine[0]["type"] == "net" and mine[0]["nprocs"] >= 1
    table = run(["ns", "list", "-t", "net"], check_rc=0).stdout.splitlines()
    assert any(box.name in line.split() for line in table[1:])


def test_ns_list_finds_a_namespace_held_only_by_an_fd():
    # The holder: a process that opens a new user namespace's file and passes it on, then exits.
    holder_code = (
        "import os, ctypes, sys\nlibc = ctypes.CDLL(None)\nunshared_r, unshared_w = os.pipe()\n"
        "go_r, go_w = os.pipe()\npid = os.fork()\nif pid == 0:\n    libc.unshare(0x10000000)\n"
        "    os.write(unshared_w, b'u')\n    os.read(go_r, 1)\n    os._exit(0)\nos.read(unshared_r, 1)\n"
        "fd = os.open(f'/proc/{pid}/ns/user', os.O_RDONLY)\nos.write(go_w, b'g')\nos.waitpid(pid, 0)\n"
        "print(os.fstat(fd).st_ino, flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen(["python3", "-c", holder_code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        inode = int(holder.stdout.readline())
        rows = json.loads(run(["ns", "list", "-t", "user", "--json"], check_rc=0).stdout)
        found = [row for row in rows if row["ns"] == inode]
        assert len(found) == 1 and found[0]["nprocs"] == 0 and found[0]["held_by"] == ["fd"]
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)


def _start_monitor() -> subprocess.Popen:
    """`rootsand ns monitor --json`, once it watches."""
    monitor = subprocess.Popen(rootsand_argv() + ["ns", "monitor", "--json"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    # What its first full scan sees is not reported: it says when that scan is done
    ready = monitor.stderr.readline()
    assert re.fullmatch(r"rootsand: watching \d+ namespaces; new and gone ones follow\n", ready), ready
    return monitor


def _monitor_events(monitor: subprocess.Popen, done, seconds: float = 10) -> list[dict]:
    """The monitor's events until done(events) (or `seconds` have passed: then the test fails). Raw reads: a
    buffered readline would keep lines where select cannot see them."""
    events, pending = [], b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not done(events):
        if select.select([monitor.stdout], [], [], 1)[0]:
            pending += os.read(monitor.stdout.fileno(), 65536)
            *lines, pending = pending.split(b"\n")
            events += [json.loads(line) for line in lines if line]
    return events


def _net(events, kind):
    return {e["ns"] for e in events if e["event"] == kind and e["type"] == "net"}


def test_ns_monitor_sees_a_short_sandbox_come_and_go(tmp_path):
    monitor = _start_monitor()
    try:
        sandbox("sleep", "0.2", cwd=tmp_path, check_rc=0)
        # Other sandboxes (an earlier test's) may come and go meanwhile: wait for one seen both ways.
        events = _monitor_events(monitor, lambda events: _net(events, "new") & _net(events, "gone"))
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    assert _net(events, "new") & _net(events, "gone"), (events, monitor.stderr.read())


def test_ns_monitor_says_new_and_gone_once_per_namespace_with_the_sandboxs_name(tmp_path):
    """Issue 21: a namespace was reported gone when the setup process exited and new again when PID 1 held it
    (four events instead of two), and its first events carried no sandbox name."""
    name, status = f"once-{uuid.uuid4().hex[:8]}", tmp_path / "status.json"
    monitor = _start_monitor()
    try:
        sandbox("sleep", "0.5", opts=["--name", name, "--json-status", str(status)], cwd=tmp_path, check_rc=0)
        inodes = json.loads(status.read_text().splitlines()[0])["namespaces"]
        ours = {(kind, ns) for kind, ns in inodes.items()}
        events = _monitor_events(monitor, lambda events: {(e["ns"], e["event"]) for e in events} >= {
            (ns, what) for ns in inodes.values() for what in ("new", "gone")}, 30)
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    mine = [e for e in events if e["ns"] in inodes.values()]
    kinds = {"mnt": "mount"}
    assert sorted((kinds.get(e["type"], e["type"]), e["ns"], e["event"]) for e in mine) == sorted(
        (kind, ns, what) for kind, ns in ours for what in ("new", "gone")), mine
    assert {e["sandbox"] for e in mine} == {name}


def test_ns_monitor_takes_from_its_fifo_only_lines_as_launchers_write_them(tmp_path):
    """Attack 7: a sandbox that can see the runtime directory can write to a monitor's FIFO (a read-only
    mount does not stop that). A forged line printed raw escapes (a window title, a cleared screen) and
    another ended the monitor (an internal error). Such lines are dropped; the monitor goes on."""
    status = tmp_path / "status.json"
    sandbox("true", opts=["--json-status", str(status)], cwd=tmp_path, check_rc=0)
    registry = os.path.dirname(json.loads(status.read_text().splitlines()[0])["registry"])
    monitor = subprocess.Popen(rootsand_argv() + ["ns", "monitor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, text=True)
    try:
        assert "new and gone ones follow" in monitor.stderr.readline()
        forged = [{"event": "new", "namespaces": [1]}, {"event": "new", "namespaces": {"net": 7}, "pid": "x",
                                                         "launcher": 1, "sandbox": "a"},
                  {"event": "new", "namespaces": {"net": 4026599999}, "pid": 1, "launcher": 1,
                   "sandbox": "\x1b]0;owned\x07\x1b[2J", "command": "x"},
                  {"event": "new", "namespaces": {"bogus": 5}, "pid": 1, "launcher": 1, "sandbox": "b"}]
        fd = os.open(os.path.join(registry, f"monitor-{monitor.pid}.fifo"), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"".join(json.dumps(line).encode() + b"\n" for line in forged))
        finally:
            os.close(fd)
        name = f"after-{uuid.uuid4().hex[:8]}"
        sandbox("true", opts=["--name", name], cwd=tmp_path, check_rc=0)
        out = ""
        deadline = time.monotonic() + 30
        while name not in out and time.monotonic() < deadline and monitor.poll() is None:
            if select.select([monitor.stdout], [], [], 1)[0]:
                out += os.read(monitor.stdout.fileno(), 65536).decode()
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    assert monitor.returncode == -15 or monitor.returncode == 143, monitor.stderr.read()
    assert name in out and "\x1b" not in out and "4026599999" not in out and "bogus" not in out, out


@pytest.fixture
def cpu_burners():
    """A busy loop per CPU for the length of a test: the load of a full test suite on a small machine."""
    burners = [subprocess.Popen(["python3", "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    yield
    for burner in burners:
        burner.kill()
        burner.wait()


def test_ns_monitor_sees_every_short_sandbox_under_load(tmp_path, cpu_burners):
    """A sandbox that lives a few milliseconds is reported, its start and its end, however slowly the monitor
    gets to run: 30 in a row, while every CPU is busy."""
    monitor = _start_monitor()
    try:
        nets = []  # (net namespace, sandbox): the kernel reuses a gone namespace's inode number
        for i in range(30):
            name, status = f"short-{uuid.uuid4().hex[:8]}", tmp_path / f"status-{i}.json"
            sandbox("true", opts=["--name", name, "--json-status", str(status)], cwd=tmp_path, check_rc=0)
            nets.append((json.loads(status.read_text().splitlines()[0])["namespaces"]["net"], name))

        def missed(events):
            seen = {(e["event"], e["ns"], e["sandbox"]) for e in events if e["type"] == "net"}
            return [(what, name) for ns, name in nets for what in ("new", "gone") if (what, ns, name) not in seen]

        events = _monitor_events(monitor, lambda events: not missed(events), 60)
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    assert missed(events) == [], f"{len(missed(events))} of {2 * len(nets)} events missed"
    # The FIFO the launchers wrote to goes with the monitor
    registry = os.path.dirname(json.loads(status.read_text().splitlines()[0])["registry"])
    assert (monitor.returncode, [name for name in os.listdir(registry) if name.startswith("monitor-")]) == (143, [])


def test_a_killed_monitors_fifo_stalls_no_sandbox_and_the_next_monitor_removes_it(tmp_path):
    status = tmp_path / "status.json"
    killed = _start_monitor()
    killed.kill()
    killed.wait()
    sandbox("true", opts=["--json-status", str(status)], cwd=tmp_path, check_rc=0)  # nobody reads its FIFO
    registry = os.path.dirname(json.loads(status.read_text().splitlines()[0])["registry"])
    assert f"monitor-{killed.pid}.fifo" in os.listdir(registry)
    monitor = _start_monitor()
    try:
        assert [name for name in os.listdir(registry) if name.startswith("monitor-")] == [f"monitor-{monitor.pid}.fifo"]
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)


def test_the_status_file_names_the_registry_entry(tmp_path):
    status = tmp_path / "st.json"
    sandbox("true", opts=["--name", "status-x", "--json-status", str(status)], cwd=tmp_path, check_rc=0)
    first = json.loads(status.read_text().splitlines()[0])
    assert first["name"] == "status-x" and first["registry"].endswith("/sandboxes/status-x.json")
    assert not os.path.exists(first["registry"])  # removed at exit


def test_bash_completion_completes_commands_and_sandbox_names(box):
    script = run(["completion", "bash"], check_rc=0).stdout
    path = os.path.join(os.path.dirname(rootsand_argv()[0]))
    probe = (f'export PATH="{path}:$PATH"\n{script}\n'
             'COMP_WORDS=(rootsand st); COMP_CWORD=1; _rootsand; echo "${COMPREPLY[*]}"\n'
             'COMP_WORDS=(rootsand exec ""); COMP_CWORD=2; _rootsand; echo "${COMPREPLY[*]}"\n')
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True, timeout=60)
    lines = done.stdout.splitlines()
    assert lines[0] == "stop", done.stderr
    assert box.name in lines[1].split()


WATCHER = """
import os
seen, me = set(), os.getpid()
print("ready", flush=True)
while not os.path.exists("stop"):  # until the test is done: a loaded machine makes any time too short
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if b"ROOTSAND_TEST_SECRET" in f.read():
                    seen.add(pid)
        except OSError:
            pass
print("seen" if seen else "never", flush=True)
"""


def test_a_sandbox_cannot_read_the_environment_of_what_exec_runs(tmp_path):
    """Until its execve the exec'd process carries the caller's environment: it is not dumpable until then,
    so no process of the sandbox can read it (nor ptrace it before its seccomp filter is in place)."""
    (tmp_path / "watch.py").write_text(WATCHER)
    watcher = Running(tmp_path, "python3", "watch.py")
    try:
        for _ in range(15):
            run(["exec", watcher.name, "--", "true"], env=dict(os.environ, ROOTSAND_TEST_SECRET="s3cr3t"),
                check_rc=0)
        (tmp_path / "stop").touch()
        assert watcher.proc.stdout.readline().strip() == "never"
        assert watcher.proc.wait(timeout=30) == 0
    finally:
        watcher.close()


def test_inspect_escapes_what_the_sandbox_may_name(tmp_path):
    odd = tmp_path / "dir\x1b]0;title\x07end"
    odd.mkdir()
    running = Running(odd, "sh", "-c", "echo ready; exec sleep 120")
    try:
        text = run(["inspect", running.name], check_rc=0).stdout
    finally:
        running.close()
    assert "\x1b" not in text and "\x07" not in text
    assert "dir\\x1b]0;title\\x07end" in text
