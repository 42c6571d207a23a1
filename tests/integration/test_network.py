"""Networking as the unprivileged user: none, slirp (real slirp4netns) and host modes, ports, teardown.

All traffic stays on this machine: the host's loopback and the sandbox's own namespaces.
"""

import os
import signal
import socket
import subprocess
import urllib.request

import pytest

from conftest import rootsand_argv, sandbox, wait_until_gone

UID = os.getuid()


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slirp_processes() -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and os.stat(f"/proc/{pid}").st_uid == UID:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "slirp4netns":
                        found.append(pid)
        except OSError:
            pass
    return found


def wait_no_slirp(before, seconds=3.0):
    return wait_until_gone(lambda: [p for p in slirp_processes() if p not in before], seconds)


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


def test_slirp_gives_address_route_and_dns():
    r = sandbox("sh", "-c", "ip -o -4 addr show tap0; ip route; cat /etc/resolv.conf", opts=["--net", "slirp"],
                check_rc=0)
    assert "10.0.2.100/24" in r.stdout
    assert "default via 10.0.2.2 dev tap0" in r.stdout
    nameservers = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("nameserver")]
    assert nameservers[0] == "10.0.2.3"
    assert not any(ns.startswith("127.") or ns == "::1" for ns in nameservers)
    with open("/etc/resolv.conf") as f:
        assert "10.0.2.3" not in f.read()  # the host's file is untouched


def test_slirp_dns_answers_on_port_53():
    code = ("import socket, struct\n"
            "q = struct.pack('>6H', 0x4242, 0x0100, 1, 0, 0, 0) + b'\\x09localhost\\x00' + struct.pack('>2H', 1, 1)\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)\n"
            "s.sendto(q, ('10.0.2.3', 53)); data, peer = s.recvfrom(512)\n"
            "print(peer[0], hex(struct.unpack('>H', data[:2])[0]), data[2] >> 7)\n")
    r = sandbox("python3", "-c", code, opts=["--net", "slirp"], check_rc=0)
    assert r.stdout.split() == ["10.0.2.3", "0x4242", "1"]  # a DNS response to our query


@pytest.mark.writable_proc_sys
def test_slirp_ipv6_address_without_delay():
    r = sandbox("sh", "-c", "ip -o -6 addr show tap0 scope global; cat /proc/sys/net/ipv6/conf/tap0/accept_dad",
                opts=["--net", "slirp"], check_rc=0)
    assert "fd00::" in r.stdout and "tentative" not in r.stdout
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


def test_host_loopback_is_closed_by_default_and_open_when_allowed(host_server):
    r = sandbox("python3", "-c", CONNECT, str(host_server), opts=["--net", "slirp"], check_rc=0)
    assert r.stdout.startswith("refused")
    r = sandbox("python3", "-c", CONNECT, str(host_server), opts=["--net", "slirp", "--allow-host-loopback"], check_rc=0)
    assert r.stdout.strip() == "hello-from-host"


def _start(args, cwd):
    proc = subprocess.Popen(rootsand_argv() + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, cwd=cwd)
    line = proc.stdout.readline().strip()
    assert line == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_publish_tcp_http_server(tmp_path):
    (tmp_path / "index.html").write_text("served from the sandbox\n")
    port = free_port()
    script = ("import http.server, socketserver, sys\n"
              "h = http.server.SimpleHTTPRequestHandler; h.log_message = lambda *a: None\n"
              "s = socketserver.TCPServer(('', 8000), h); print('ready', flush=True); s.serve_forever()\n")
    proc = _start(["run", "--net", "slirp", "--publish", f"{port}:8000", "--", "python3", "-c", script], tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
            assert resp.read().decode() == "served from the sandbox\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 128 + signal.SIGTERM
    assert [f for f in os.listdir(runtime_dir()) if f.startswith("slirp-")] == []


def test_publish_udp(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    script = ("import socket\n"
              "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('', 9999)); print('ready', flush=True)\n"
              "data, peer = s.recvfrom(100); s.sendto(b'echo:' + data, peer); s.recvfrom(100)\n")
    # The replies come back through 10.0.2.2, which --disable-host-loopback would drop (podman#4586).
    proc = _start(["run", "--net", "slirp", "--allow-host-loopback", "--publish", f"127.0.0.1:{port}:9999/udp", "--",
                   "python3", "-c", script], tmp_path)
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


def test_taken_host_port_fails_before_the_command_runs(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        r = sandbox("touch", "ran", opts=["--net", "slirp", "--publish", f"{port}:80"], cwd=tmp_path, check_rc=125)
    finally:
        taken.close()
    assert r.stderr.startswith(f"rootsand: error: cannot publish 127.0.0.1:{port}:80/tcp")
    assert not (tmp_path / "ran").exists()


def test_publish_needs_slirp():
    r = sandbox("true", opts=["--publish", "8080:80"], check_rc=125)
    assert r.stderr.startswith("rootsand: error: --publish needs --net slirp")


def test_host_mode_sees_the_hosts_interfaces():
    host_links = sorted(os.listdir("/sys/class/net"))
    r = sandbox("sh", "-c", "ip -o link | cut -d: -f2 | cut -d@ -f1", opts=["--net", "host"], check_rc=0)
    assert sorted(r.stdout.split()) == host_links
    assert sandbox("readlink", "/proc/self/ns/net", opts=["--net", "host"], check_rc=0).stdout.strip() == \
        os.readlink("/proc/self/ns/net")


def test_no_slirp_left_after_exit_crash_and_timeout():
    before = slirp_processes()
    sandbox("true", opts=["--net", "slirp"], check_rc=0)
    sandbox("sh", "-c", "kill -SEGV $$", opts=["--net", "slirp"], check_rc=128 + signal.SIGSEGV)
    sandbox("sleep", "30", opts=["--net", "slirp", "--timeout", "1"], check_rc=124)
    assert wait_no_slirp(before) == []


def test_no_slirp_or_socket_left_after_launcher_sigkill(tmp_path):
    before = slirp_processes()
    port = free_port()
    proc = _start(["run", "--net", "slirp", "--publish", f"{port}:80", "--", "sh", "-c", "echo ready; sleep 300"],
                  tmp_path)
    assert len([p for p in slirp_processes() if p not in before]) == 1
    proc.kill()
    proc.wait()
    assert wait_no_slirp(before) == []
    assert [f for f in os.listdir(runtime_dir()) if f.startswith("slirp-")] == []


def test_publish_with_xdg_runtime_dir(tmp_path):
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(xdg))
    sandbox("true", opts=["--net", "slirp", "--publish", f"{free_port()}:80"], env=env, check_rc=0)
    assert os.listdir(xdg / "rootsand") == ["sandboxes"]  # no socket left, and the registry is empty
    assert os.listdir(xdg / "rootsand" / "sandboxes") == []


def test_missing_slirp4netns_is_125_with_a_hint(tmp_path):
    for helper in ("newuidmap", "newgidmap"):
        os.symlink(f"/usr/bin/{helper}", tmp_path / helper)
    env = dict(os.environ, ROOTSAND_HELPER_PATH=str(tmp_path))
    r = sandbox("true", opts=["--net", "slirp"], env=env, check_rc=125)
    lines = r.stderr.splitlines()
    assert lines[0] == "rootsand: error: --net slirp: slirp4netns not found"
    assert lines[1].startswith("rootsand: hint:") and "slirp4netns" in lines[1]


def test_net_profile_uses_slirp():
    r = sandbox("ip", "-o", "-4", "addr", "show", "tap0", opts=["--profile", "net"], check_rc=0)
    assert "10.0.2.100/24" in r.stdout


def test_udp_publish_without_host_loopback_warns(tmp_path):
    r = sandbox("true", opts=["--net", "slirp", "--publish", f"{free_port(socket.SOCK_DGRAM)}:53/udp"], check_rc=0)
    assert "rootsand: warning:" in r.stderr and "--allow-host-loopback" in r.stderr
