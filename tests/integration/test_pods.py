"""Pods as the unprivileged user: members on the pod's bridge reach each other by name, the pod's uplink
(real pasta) reaches the host and not its loopback, and nothing of a pod is left after `pod rm -f` or a
SIGKILL. All traffic stays on this machine."""

import json
import os
import signal
import socket
import threading

import pytest

from conftest import run, sandbox, wait_until_gone

UID = os.getuid()
PASTA = ("passt", "passt.avx2", "pasta", "pasta.avx2")

# A member that serves TCP and UDP on port 9000: "name:DATA" back to each peer. It prints "ready" first.
SERVER = ("import socket, threading\n"
          "t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
          "t.bind(('', 9000)); t.listen()\n"
          "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('', 9000))\n"
          "def udp():\n"
          "    while True:\n"
          "        data, peer = u.recvfrom(100); u.sendto(b'udp:' + data, peer)\n"
          "threading.Thread(target=udp, daemon=True).start()\n"
          "print('ready', flush=True)\n"
          "while True:\n"
          "    c, _ = t.accept(); c.sendall(b'tcp:' + c.recv(100)); c.close()\n")

CLIENT = ("import socket, sys\n"
          "c = socket.create_connection((sys.argv[1], 9000), timeout=10)\n"
          "c.sendall(b'hi'); print(c.recv(100).decode())\n"
          "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)\n"
          "u.sendto(b'hi', (sys.argv[1], 9000)); print(u.recvfrom(100)[0].decode())\n")


def pods_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(base, "rootsand", "pods") if base else f"/tmp/rootsand-{UID}/pods"


def processes(names) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == UID:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() in names:
                        found.append(pid)
        except OSError:
            pass
    return found


def running(pid) -> list[str]:
    """[pid] while that process runs (not a zombie), else []."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return [str(pid)] if f.read().rsplit(")", 1)[1].split()[0] != "Z" else []
    except OSError:
        return []


def pod_files(name) -> list[str]:
    return sorted(f for f in os.listdir(pods_dir()) if f.split(".")[0] == name) if os.path.isdir(pods_dir()) else []


@pytest.fixture
def pod(request):
    """A pod (pasta uplink) named after the test; removed, with its members, at the end."""
    name = f"p{os.getpid() % 10000}{request.node.name[-12:].replace('[', '').replace(']', '')}"[:40]
    name = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)
    created = run(["pod", "create", name, "--net", "pasta"], check_rc=0)
    assert created.stdout.strip() == name
    yield name
    run(["pod", "rm", "-f", name])
    run(["rm", *STARTED])  # the detached members' records
    STARTED.clear()


STARTED = []  # the detached members started by a test


def start_member(pod, name, tmp_path, *command):
    """A detached member of `pod` (run -d) running `command`; returns once it runs."""
    STARTED.append(name)
    run(["run", "-d", "--name", name, "--pod", pod, "--", *command], check_rc=0, cwd=tmp_path)


def test_two_members_talk_tcp_and_udp_by_name_and_leave_the_hosts_file(pod, tmp_path):
    start_member(pod, "srv", tmp_path, "python3", "-c", SERVER)
    # The client connects by name; it waits for nothing: a refused connect is retried until the server listens
    client = ("import socket, sys, time\n"
              "for _ in range(100):\n"
              "    try:\n"
              "        socket.create_connection((sys.argv[1], 9000), timeout=10).close(); break\n"
              "    except ConnectionRefusedError:\n"
              "        time.sleep(0.05)\n" + CLIENT.split("\n", 1)[1])
    r = sandbox("sh", "-c", 'cat /etc/hosts; exec python3 -c "$0" srv', client, opts=["--name", "cli", "--pod", pod],
                check_rc=0)
    hosts = dict(line.split("\t")[::-1] for line in r.stdout.splitlines() if line.startswith("10.88."))
    assert sorted(hosts) == ["cli", "srv"] and hosts["srv"] != hosts["cli"]
    assert r.stdout.splitlines()[-2:] == ["tcp:hi", "udp:hi"]
    # cli has ended: its name is gone from every member's /etc/hosts (exec into the one still running)
    assert "network: pod " + pod in run(["inspect", "srv"], check_rc=0).stdout.splitlines()
    r = run(["exec", "srv", "cat", "/etc/hosts"], check_rc=0)
    assert [line.split("\t")[1] for line in r.stdout.splitlines() if line.startswith("10.88.")] == ["srv"]
    ps = run(["ps"], check_rc=0).stdout.splitlines()
    assert any(line.split()[:1] == ["srv"] and f"pod:{pod}" in line.split() for line in ps)
    listing = json.loads(run(["pod", "ls", "--json"], check_rc=0).stdout)
    assert [(p["name"], p["net"], p["members"]) for p in listing if p["name"] == pod] == [(pod, "pasta", ["srv"])]


def _host_address() -> str:
    """This host's address on its default route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("198.51.100.1", 9))  # TEST-NET-2: any address the default route leads to
        return s.getsockname()[0]


def test_a_member_reaches_the_host_through_the_uplink_and_not_its_loopback(pod):
    servers = []
    for address in ("0.0.0.0", "127.0.0.1"):
        s = socket.socket()
        s.bind((address, 0))
        s.listen()
        servers.append(s)

        def serve(s=s, address=address):
            while True:
                try:
                    conn, _ = s.accept()
                except OSError:
                    return
                conn.sendall(f"hello from {address}".encode())
                conn.close()

        threading.Thread(target=serve, daemon=True).start()
    code = ("import socket, sys\n"
            "for host, port in zip(sys.argv[1::2], sys.argv[2::2]):\n"
            "    try:\n"
            "        print(socket.create_connection((host, int(port)), timeout=3).recv(100).decode())\n"
            "    except OSError as e:\n"
            "        print('unreachable', type(e).__name__)\n")
    try:
        r = sandbox("python3", "-c", code, _host_address(), str(servers[0].getsockname()[1]),
                    "10.0.2.2", str(servers[1].getsockname()[1]), opts=["--pod", pod], check_rc=0)
    finally:
        for s in servers:
            s.close()
    lines = r.stdout.splitlines()
    assert lines[0] == "hello from 0.0.0.0"
    assert lines[1].startswith("unreachable")


def test_pod_rm_refuses_while_members_run_and_f_stops_them_leaving_nothing(tmp_path):
    before = processes(PASTA)
    name = f"rm{os.getpid()}"
    run(["pod", "create", name, "--net", "pasta"], check_rc=0)
    assert len([p for p in processes(PASTA) if p not in before]) == 1
    start_member(name, "m1", tmp_path, "sleep", "300")
    r = run(["pod", "rm", name], check_rc=125)
    assert r.stderr.splitlines()[0] == f"rootsand: error: pod {name} has members running: m1"
    run(["pod", "rm", "-f", name], check_rc=0)
    assert run(["ps", "-q"], check_rc=0).stdout.split().count("m1") == 0
    assert wait_until_gone(lambda: [p for p in processes(PASTA) if p not in before]) == []
    assert pod_files(name) == []
    assert json.loads(run(["pod", "ls", "--json"], check_rc=0).stdout) == []
    run(["rm", *STARTED])
    STARTED.clear()


def test_a_killed_keeper_leaves_nothing(tmp_path):
    before = processes(PASTA)
    name = f"kill{os.getpid()}"
    run(["pod", "create", name, "--net", "pasta"], check_rc=0)
    info = json.loads(run(["pod", "inspect", name], check_rc=0).stdout)
    keeper, holder = info["keeper"]["pid"], info["holder"]["pid"]
    os.kill(keeper, signal.SIGKILL)
    # the holder (PDEATHSIG) and pasta (PDEATHSIG) die with it
    assert wait_until_gone(lambda: [p for p in processes(PASTA) if p not in before]) == []
    assert wait_until_gone(lambda: running(holder)) == []
    # its files go with the next pod command, or rootsand cleanup
    said = run(["cleanup"], check_rc=0).stdout.splitlines()
    assert f"removed the files of pod {name} (its keeper was killed)" in said
    assert pod_files(name) == []
    assert json.loads(run(["pod", "ls", "--json"], check_rc=0).stdout) == []


def test_a_killed_member_leaves_the_pod(pod, tmp_path):
    start_member(pod, "victim", tmp_path, "sleep", "300")
    launcher = next(int(line.split()[1]) for line in run(["ps"], check_rc=0).stdout.splitlines()[1:]
                    if line.split()[0] == "victim")
    assert json.loads(run(["pod", "inspect", pod], check_rc=0).stdout)["members"].keys() == {"victim"}
    os.kill(launcher, signal.SIGKILL)
    assert wait_until_gone(lambda: running(launcher), 10) == []
    r = sandbox("cat", "/etc/hosts", opts=["--name", "after", "--pod", pod], check_rc=0)
    assert [line.split("\t")[1] for line in r.stdout.splitlines() if line.startswith("10.88.")] == ["after"]


def test_errors_name_the_pod():
    r = sandbox("true", opts=["--pod", "no-such-pod"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: no pod named no-such-pod")
    r = sandbox("true", opts=["--pod", "x", "--net", "slirp"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: --pod joins the pod's network: it takes no --net slirp")
    r = run(["pod", "create", "x", "--net", "slirp"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: invalid pod --net 'slirp': expected none or pasta")


def test_a_pod_name_is_taken_once(pod):
    r = run(["pod", "create", pod], check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: a pod named {pod} exists")


def test_a_published_port_reaches_the_member_that_listens(tmp_path):
    import urllib.request

    name = f"pub{os.getpid()}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run(["pod", "create", name, "--net", "pasta", "--publish", f"{port}:8000"], check_rc=0)
    try:
        (tmp_path / "index.html").write_text("served by a member\n")
        start_member(name, "idle", tmp_path, "sleep", "300")  # the first address: it does not listen
        start_member(name, "www", tmp_path, "python3", "-m", "http.server", "8000")
        body = None
        for _ in range(100):  # until the server listens (run -d returns once it has started)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
                    body = resp.read().decode()
                break
            except OSError:
                threading.Event().wait(0.05)
        assert body == "served by a member\n"
        info = json.loads(run(["pod", "inspect", name], check_rc=0).stdout)
        assert info["publish"] == [f"127.0.0.1:{port}:8000/tcp"]
    finally:
        run(["pod", "rm", "-f", name])
        run(["rm", *STARTED])
        STARTED.clear()


def test_pod_publish_is_tcp_through_pasta():
    r = run(["pod", "create", "x", "--publish", "8080:80"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: pod --publish needs --net pasta")
    r = run(["pod", "create", "x", "--net", "pasta", "--publish", "8080:80/udp"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: pod --publish: TCP ports only")


def test_a_killed_holder_ends_the_pod_and_leaves_nothing():
    before = processes(PASTA)
    name = f"hold{os.getpid()}"
    run(["pod", "create", name, "--net", "pasta"], check_rc=0)
    info = json.loads(run(["pod", "inspect", name], check_rc=0).stdout)
    keeper = info["keeper"]["pid"]
    os.kill(info["holder"]["pid"], signal.SIGKILL)
    # the keeper sees it, stops pasta, removes the pod's files and exits
    assert wait_until_gone(lambda: running(keeper), 10) == []
    assert wait_until_gone(lambda: [p for p in processes(PASTA) if p not in before]) == []
    assert pod_files(name) == []


def test_a_pod_without_pasta_installed_is_125_with_a_hint_and_leaves_nothing(tmp_path):
    for helper in ("newuidmap", "newgidmap"):
        os.symlink(f"/usr/bin/{helper}", tmp_path / helper)
    env = dict(os.environ, ROOTSAND_HELPER_PATH=str(tmp_path))
    name = f"nopasta{os.getpid()}"
    r = run(["pod", "create", name, "--net", "pasta"], env=env, check_rc=125)
    lines = r.stderr.splitlines()
    assert lines[0] == f"rootsand: error: pod {name}: pod --net pasta: pasta not found"
    assert lines[1].startswith("rootsand: hint:") and "'passt'" in lines[1]
    assert pod_files(name) == []
