"""Networking as the unprivileged user: none, slirp (real slirp4netns), pasta (real passt) and host modes,
ports, teardown. slirp and pasta make the same promises, so most tests here run with each.

All traffic stays on this machine: the host's loopback and the sandbox's own namespaces.
"""

import os
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from conftest import rootsand_argv, sandbox, wait_until_gone

UID = os.getuid()


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The user-mode network helpers and the names their processes run under (Debian's pasta is passt.avx2).
HELPERS = {"slirp": ("slirp4netns",), "pasta": ("passt", "passt.avx2", "pasta", "pasta.avx2")}


@pytest.fixture(params=sorted(HELPERS))
def mode(request):
    """slirp or pasta: the tests that take it hold both to the same promises."""
    return request.param


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def slirp_processes(mode="slirp") -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == UID:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() in HELPERS[mode]:
                        found.append(pid)
        except OSError:
            pass
    return found


def wait_no_slirp(before, seconds=3.0, mode="slirp"):
    return wait_until_gone(lambda: [p for p in slirp_processes(mode) if p not in before], seconds)


def runtime_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(base, "rootsand") if base else f"/tmp/rootsand-{UID}"


def test_none_mode_has_only_loopback_v4_and_v6():
    code = ("import socket\n"
            "for fam, addr in ((socket.AF_INET, '127.0.0.1'), (socket.AF_INET6, '::1')):\n"
            "    s = socket.socket(fam); s.bind((addr, 0)); s.listen()\n"
            "    socket.create_connection(s.getsockname()[:2]).close(); print('ok', addr)\n")
    r = sandbox("sh", "-c", f"ip -o link | cut -d: -f2; python3 -c \"{code}\"", check_rc=0)
    assert r.stdout.split() == ["lo", "ok", "127.0.0.1", "ok", "::1"]


def test_slirp_gives_address_route_and_dns(mode):
    r = sandbox("sh", "-c", "ip -o -4 addr show tap0; ip route; cat /etc/resolv.conf", opts=["--net", mode],
                check_rc=0)
    assert "10.0.2.100/24" in r.stdout
    assert "default via 10.0.2.2 dev tap0" in r.stdout
    nameservers = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("nameserver")]
    assert nameservers[0] == "10.0.2.3"
    assert not any(ns.startswith("127.") or ns == "::1" for ns in nameservers)
    with open("/etc/resolv.conf") as f:
        assert "10.0.2.3" not in f.read()  # the host's file is untouched


def test_slirp_dns_answers_on_port_53(mode):
    code = ("import socket, struct\n"
            "q = struct.pack('>6H', 0x4242, 0x0100, 1, 0, 0, 0) + b'\\x09localhost\\x00' + struct.pack('>2H', 1, 1)\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n"
            "s.sendto(q, ('10.0.2.3', 53)); data, peer = s.recvfrom(512)\n"
            "print(peer[0], hex(struct.unpack('>H', data[:2])[0]), data[2] >> 7)\n")
    r = sandbox("python3", "-c", code, opts=["--net", mode], check_rc=0)
    assert r.stdout.split() == ["10.0.2.3", "0x4242", "1"]  # a DNS response to our query


@pytest.mark.writable_proc_sys
def test_slirp_ipv6_address_without_delay(mode):
    r = sandbox("sh", "-c", "ip -o -6 addr show tap0 scope global; ip -6 route show default; "
                "cat /proc/sys/net/ipv6/conf/tap0/accept_dad", opts=["--net", mode], check_rc=0)
    assert "fd00::" in r.stdout and "tentative" not in r.stdout
    assert any(line.startswith("default via ") and " dev tap0 " in line for line in r.stdout.splitlines())
    if mode == "slirp":  # pasta's address comes with nodad, so it needs no sysctl
        assert r.stdout.split()[-1] == "0"


@pytest.fixture
def host_server():
    """A TCP server on the host's 127.0.0.1 that answers 'hello-from-host'."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(10)
    port = srv.getsockname()[1]
    stop = False

    import threading

    def serve():
        while not stop:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.sendall(b"hello-from-host")
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield port
    stop = True
    srv.close()


CONNECT = ("import socket, sys\n"
           "try:\n"
           "    c = socket.create_connection(('10.0.2.2', int(sys.argv[1])), timeout=3); print(c.recv(100).decode())\n"
           "except OSError as e:\n"
           "    print('refused', type(e).__name__)\n")


def test_host_loopback_is_closed_by_default_and_open_when_allowed(host_server, mode):
    r = sandbox("python3", "-c", CONNECT, str(host_server), opts=["--net", mode], check_rc=0)
    assert r.stdout.startswith("refused")
    r = sandbox("python3", "-c", CONNECT, str(host_server), opts=["--net", mode, "--allow-host-loopback"], check_rc=0)
    assert r.stdout.strip() == "hello-from-host"


def test_the_sandboxs_loopback_is_not_the_hosts(host_server, mode):
    """pasta forwards every port bound on the host to the namespace's loopback unless told not to (-T)."""
    code = CONNECT.replace("'10.0.2.2'", "'127.0.0.1'")
    r = sandbox("python3", "-c", code, str(host_server), opts=["--net", mode, "--allow-host-loopback"], check_rc=0)
    assert r.stdout.startswith("refused")


def test_a_port_the_sandbox_listens_on_is_not_published_unless_asked(tmp_path, mode):
    """pasta forwards every port bound in the namespace to the host unless told not to (-t): every port
    below the ephemeral ones, so the port here is one of those."""
    port = next(p for p in range(20000 + os.getpid() % 5000, 32768) if _free(p))
    script = (f"import socket; s = socket.socket(); s.bind(('', {port})); s.listen(); print('ready', flush=True); "
              "import time; time.sleep(300)")
    proc = _start(["run", "--net", mode, "--", "python3", "-c", script], tmp_path)
    try:
        # pasta's default (-t auto) scans the namespace's listening ports every second: refused throughout
        # a few of its scans (the refusal each time is what is checked, not how long it takes)
        for _ in range(12):
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=5)
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def _start(args, cwd):
    proc = subprocess.Popen(rootsand_argv() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, cwd=cwd)
    line = proc.stdout.readline().strip()
    assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_publish_tcp_http_server(tmp_path, mode):
    (tmp_path / "index.html").write_text("served from the sandbox\n")
    port = free_port()
    script = ("import http.server, socketserver, sys\n"
              "h = http.server.SimpleHTTPRequestHandler; h.log_message = lambda *a: None\n"
              "s = socketserver.TCPServer(('', 8000), h); print('ready', flush=True); s.serve_forever()\n")
    proc = _start(["run", "--net", mode, "--publish", f"{port}:8000", "--", "python3", "-c", script], tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
            assert resp.read().decode() == "served from the sandbox\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert [f for f in os.listdir(runtime_dir()) if f.startswith("slirp-")] == []


def test_publish_udp(tmp_path, mode):
    port = free_port(socket.SOCK_DGRAM)  # the same number inside: Debian 12's pasta loses translated replies
    script = ("import socket, sys\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', int(sys.argv[1])))\n"
              "print('ready', flush=True)\n"
              "data, peer = s.recvfrom(100); s.sendto(b'echo:' + data, peer); s.recvfrom(100)\n")
    # The replies come back through 10.0.2.2, which --disable-host-loopback would drop (podman#4586).
    proc = _start(["run", "--net", mode, "--allow-host-loopback", "--publish", f"127.0.0.1:{port}:{port}/udp", "--",
                   "python3", "-c", script, str(port)], tmp_path)
    try:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.settimeout(10)
        c.sendto(b"ping", ("127.0.0.1", port))
        assert c.recvfrom(100)[0] == b"echo:ping"
        c.sendto(b"bye", ("127.0.0.1", port))
        proc.communicate(timeout=10)
        assert proc.returncode == 0
    finally:
        proc.kill()


def test_pasta_warns_of_a_translated_udp_port():
    r = sandbox("true", opts=["--net", "pasta", "--publish", f"{free_port(socket.SOCK_DGRAM)}:53/udp"], check_rc=0)
    assert "rootsand: warning:" in r.stderr and "publish it to the same number" in r.stderr


def test_taken_host_port_fails_before_the_command_runs(tmp_path, mode):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        r = sandbox("touch", "ran", opts=["--net", mode, "--publish", f"{port}:80"], cwd=tmp_path, check_rc=125)
    finally:
        taken.close()
    assert r.stderr.startswith(f"rootsand: error: cannot publish 127.0.0.1:{port}:80/tcp")
    assert not (tmp_path / "ran").exists()


def test_publish_needs_slirp():
    r = sandbox("true", opts=["--publish", "8080:80"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: --publish needs --net slirp or pasta")


def test_host_mode_sees_the_hosts_interfaces():
    host_links = sorted(os.listdir("/sys/class/net"))
    r = sandbox("sh", "-c", "ip -o link | cut -d: -f2 | cut -d@ -f1", opts=["--net", "host"], check_rc=0)
    assert sorted(r.stdout.split()) == host_links
    assert sandbox("readlink", "/proc/self/ns/net", opts=["--net", "host"], check_rc=0).stdout.strip() == \
        os.readlink("/proc/self/ns/net")


def test_no_slirp_left_after_exit_crash_and_timeout(mode):
    before = slirp_processes(mode)
    sandbox("true", opts=["--net", mode], check_rc=0)
    sandbox("sh", "-c", "kill -SEGV $$", opts=["--net", mode], check_rc=128 + signal.SIGSEGV)
    sandbox("sleep", "30", opts=["--net", mode, "--timeout", "1"], check_rc=124)
    assert wait_no_slirp(before, mode=mode) == []


def test_no_slirp_or_socket_left_after_launcher_sigkill(tmp_path, mode):
    before = slirp_processes(mode)
    port = free_port()
    proc = _start(["run", "--net", mode, "--publish", f"{port}:80", "--", "sh", "-c", "echo ready; sleep 300"],
                  tmp_path)
    assert len([p for p in slirp_processes(mode) if p not in before]) == 1
    proc.kill()
    proc.wait()
    assert wait_no_slirp(before, mode=mode) == []
    assert [f for f in os.listdir(runtime_dir()) if f.startswith("slirp-")] == []


def test_publish_with_xdg_runtime_dir(tmp_path, mode):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
    sandbox("true", opts=["--net", mode, "--publish", f"{free_port()}:80"], env=env, check_rc=0)
    assert os.listdir(xdg / "rootsand") == ["sandboxes"]  # no socket left, and the registry is empty
    assert os.listdir(xdg / "rootsand" / "sandboxes") == []


@pytest.mark.parametrize("mode, helper, package",
                         [("slirp", "slirp4netns", "slirp4netns"), ("pasta", "pasta", "passt")])
def test_missing_slirp4netns_is_125_with_a_hint(tmp_path, mode, helper, package):
    for name in ("newuidmap", "newgidmap"):
        os.symlink(f"/usr/bin/{name}", tmp_path / name)
    env = dict(os.environ, ROOTSAND_HELPER_PATH=str(tmp_path))
    r = sandbox("true", opts=["--net", mode], env=env, check_rc=125)
    lines = r.stderr.splitlines()
    assert lines[0] == f"rootsand: error: --net {mode}: {helper} not found"
    assert lines[1].startswith("rootsand: hint:") and f"'{package}'" in lines[1]


def _helper_of_a_run(opts, env=None) -> str:
    """Which helper serves a sandbox run with `opts`: the one whose process appears while it runs."""
    script = "echo ready; ip -o -4 addr show tap0; exec sleep 300"
    before = {mode: slirp_processes(mode) for mode in HELPERS}
    proc = subprocess.Popen(rootsand_argv() + ["run", *opts, "--", "sh", "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        assert "10.0.2.100/24" in proc.stdout.readline()
        running = [mode for mode in HELPERS if [p for p in slirp_processes(mode) if p not in before[mode]]]
    finally:
        proc.kill()
        proc.communicate(timeout=10)
    return " ".join(running)


def test_net_profile_and_auto_use_pasta_where_installed_else_slirp(tmp_path):
    assert _helper_of_a_run(["--profile", "net"]) == "pasta"
    assert _helper_of_a_run(["--net", "auto"]) == "pasta"
    for name in ("newuidmap", "newgidmap", "slirp4netns"):
        os.symlink(f"/usr/bin/{name}", tmp_path / name)
    env = dict(os.environ, ROOTSAND_HELPER_PATH=str(tmp_path))
    assert _helper_of_a_run(["--profile", "net"], env) == "slirp"


def test_udp_publish_without_host_loopback_warns(tmp_path):  # slirp's own limit (podman#4586)
    r = sandbox("true", opts=["--net", "slirp", "--publish", f"{free_port(socket.SOCK_DGRAM)}:53/udp"], check_rc=0)
    assert "rootsand: warning:" in r.stderr and "--allow-host-loopback" in r.stderr
