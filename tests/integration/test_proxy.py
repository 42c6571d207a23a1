"""--net proxy with real curl, urllib and pip against servers on this machine's loopback.

The host's server is reached as host.rootsand.internal:PORT when an allow entry names that port; every
other name used here is refused before any lookup, so no traffic leaves the machine.
"""

import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile

import pytest

from conftest import command_stderr, rootsand_argv, sandbox, still_running

BIG = 1 << 20


def make_wheel() -> bytes:
    files = {"tinypkg/__init__.py": "VALUE = 1\n",
             "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
             "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files["tinypkg-1.0.dist-info/RECORD"] = "".join(f"{name},,\n" for name in files) + "tinypkg-1.0.dist-info/RECORD,,\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buffer.getvalue()


WHEEL = make_wheel()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path == "/hello":
            body = b"hello from the host\n"
        elif self.path == "/slow":
            time.sleep(0.5)  # an answer that takes a while: the client waits, half-closed
            body = b"hello"
        elif self.path.startswith("/big"):
            body = b"x" * int(self.path.partition("=")[2] or BIG)
        elif self.path.rstrip("/") == "/simple/tinypkg":
            body = b'<html><body><a href="/files/tinypkg-1.0-py3-none-any.whl">tinypkg-1.0-py3-none-any.whl</a></body></html>'
        elif self.path == "/files/tinypkg-1.0-py3-none-any.whl":
            body = WHEEL
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if self.path.startswith("/simple") else "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def allow(port):
    return ["--allow-host", f"host.rootsand.internal:{port}"]


def test_curl_and_urllib_reach_an_allowed_host_server_and_the_sandbox_has_only_lo(server, tmp_path):
    url = f"http://host.rootsand.internal:{server}/hello"
    script = (f"ip -o link | cut -d: -f2; curl -sS {url}; curl -sS -p {url}; curl -sS -x socks5h://127.0.0.1:3128 {url}; "
              f"python3 -c 'import urllib.request; print(urllib.request.urlopen(\"{url}\").read().decode(), end=\"\")'")
    r = sandbox("sh", "-c", script, opts=allow(server), cwd=tmp_path)
    assert (r.returncode, command_stderr(r)) == (0, [])
    assert [line.strip() for line in r.stdout.split("\n")] == ["lo"] + ["hello from the host"] * 4 + [""]


def test_the_proxy_variables_point_at_the_sandboxs_own_loopback(server, tmp_path):
    r = sandbox("sh", "-c", "env | grep -i _proxy= | sort", opts=allow(server), cwd=tmp_path, check_rc=0)
    assert r.stdout.split() == sorted([
        "ALL_PROXY=socks5h://127.0.0.1:3128", "HTTPS_PROXY=http://127.0.0.1:3128", "HTTP_PROXY=http://127.0.0.1:3128",
        "NO_PROXY=localhost,127.0.0.1,::1", "all_proxy=socks5h://127.0.0.1:3128", "https_proxy=http://127.0.0.1:3128",
        "http_proxy=http://127.0.0.1:3128", "no_proxy=localhost,127.0.0.1,::1"])


def test_pip_downloads_from_a_local_index_through_the_proxy(server, tmp_path):
    venv = os.path.dirname(os.path.dirname(sys.executable))
    r = sandbox(f"{venv}/bin/python", "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                "--no-cache-dir", "--trusted-host", "host.rootsand.internal", "--index-url", f"http://host.rootsand.internal:{server}/simple", "-d", ".", "tinypkg",
                opts=[*allow(server), "--ro-bind", venv], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rootsand: blocked" not in r.stderr
    with open(tmp_path / "tinypkg-1.0-py3-none-any.whl", "rb") as f:
        assert f.read() == WHEEL


def test_a_refused_host_gets_403_one_stderr_line_and_a_status_line(server, tmp_path):
    status = tmp_path / "status.jsonl"
    # The CONNECT's answer as curl's -w reports it, and curl's failure, not its wording (it changes).
    r = sandbox("sh", "-c", "curl -sS -w ' %{http_code}\\n' http://example.com/; curl -sS -w ' %{http_code}\\n' "
                "http://example.com/again; curl -s -p -o /dev/null -w 'CONNECT %{http_connect}' http://example.com/ "
                "|| echo ' failed'",
                opts=[*allow(server), "--json-status", str(status)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["blocked by rootsand: example.com:80 is not in the allow list", " 403"] * 2 + [
        "CONNECT 403 failed"]
    # once per host and reason, however often asked; at the end, how often
    why = "example.com:80 is not in the allow list"
    assert r.stderr.splitlines() == [f"rootsand: blocked: {why}", "rootsand: blocked example.com:80 3 times in all"]
    lines = [json.loads(line) for line in status.read_text().splitlines()]
    assert {"blocked": "example.com:80", "reason": why} in lines and lines[-1] == {"exit-code": 0}
    assert {"blocked": "example.com:80", "reason": why, "count": 3} in lines


def test_socks_refusal_says_not_allowed_by_ruleset(tmp_path):
    # SOCKS5 spoken directly (curl's wording of the reply changed between releases): greeting, then CONNECT
    # to a name; the reply's second byte is the answer, 2 for "not allowed by ruleset".
    script = ("import socket\n"
              "s = socket.create_connection(('127.0.0.1', 3128))\n"
              "s.sendall(b'\\x05\\x01\\x00')\n"
              "assert s.recv(2) == b'\\x05\\x00'\n"
              "name = b'evil.example'\n"
              "s.sendall(b'\\x05\\x01\\x00\\x03' + bytes([len(name)]) + name + (80).to_bytes(2, 'big'))\n"
              "print(s.recv(10)[1])\n")
    r = sandbox("python3", "-c", script, opts=["--net", "proxy"], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "2\n"), r.stderr
    assert r.stderr.splitlines() == ["rootsand: blocked: evil.example:80 is not in the allow list",
                                     "rootsand: blocked evil.example:80 once in all"]


def test_the_host_loopback_is_not_reachable_directly_nor_by_an_unlisted_port(server, tmp_path):
    other = socket.socket()
    other.bind(("127.0.0.1", 0))
    other.listen()
    other_port = other.getsockname()[1]
    try:
        r = sandbox("sh", "-c", f"curl -sS --noproxy '*' http://127.0.0.1:{server}/hello; echo direct=$?; "
                    f"curl -sS http://host.rootsand.internal:{other_port}/; "
                    f"curl -sS http://host.rootsand.internal/",
                    opts=allow(server), cwd=tmp_path)
    finally:
        other.close()
    lines = r.stdout.splitlines()
    # the sandbox's 127.0.0.1 is its own: there, an allow entry's port is rootsand's capture, which refuses
    assert lines[0].startswith("direct=") and lines[0] != "direct=0"
    assert lines[1] == (f"blocked by rootsand: host.rootsand.internal:{other_port}: port {other_port} is not allowed "
                        f"for host.rootsand.internal (allowed: {server})")
    assert lines[2] == (f"blocked by rootsand: host.rootsand.internal:80: port 80 is not allowed for "
                        f"host.rootsand.internal (allowed: {server})")
    assert f"rootsand: blocked: 127.0.0.1:{server} is the sandbox's own loopback, where rootsand takes port {server} " \
           "for its capture (80, 443 and the ports allow entries name)" in r.stderr.splitlines()


def test_a_server_the_sandbox_starts_is_reached_directly_with_the_variables_set(tmp_path):
    (tmp_path / "page").write_text("mine\n")
    script = ("python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & "
              "for i in $(seq 100); do curl -s http://localhost:8000/page && break; "
              "python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8000), 0.1)' 2>/dev/null; done; "
              "curl -sS http://127.0.0.1:8000/page; kill $!")
    r = sandbox("sh", "-c", script, opts=["--net", "proxy"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "mine"
    assert "rootsand: blocked" not in r.stderr


def test_fifty_concurrent_downloads_complete(server, tmp_path):
    code = ("import concurrent.futures, urllib.request\n"
            f"url = 'http://host.rootsand.internal:{server}/big?n={BIG}'\n"
            "get = lambda i: len(urllib.request.urlopen(url, timeout=60).read())\n"
            "with concurrent.futures.ThreadPoolExecutor(50) as pool:\n"
            "    sizes = list(pool.map(get, range(50)))\n"
            "print(len(sizes), set(sizes))\n")
    r = sandbox("python3", "-c", code, opts=allow(server), cwd=tmp_path, timeout=120)
    assert (r.returncode, r.stdout) == (0, f"50 {{{BIG}}}\n"), r.stderr


def test_a_slow_client_is_dropped_after_the_header_timeout_while_another_downloads(server, tmp_path):
    profile = tmp_path / "slow.toml"
    profile.write_text('extends = "default"\n[network]\nmode = "proxy"\n'
                       f'allow = ["host.rootsand.internal:{server}"]\nheader_timeout = "1s"\n')
    code = ("import socket, urllib.request\n"
            "slow = socket.create_connection(('127.0.0.1', 3128))\n"
            f"slow.sendall(b'GET http://host.rootsand.internal:{server}/hello HTTP/1.1\\r\\nHost: x\\r\\n')\n"
            f"print(len(urllib.request.urlopen('http://host.rootsand.internal:{server}/big?n={BIG}').read()))\n"
            "slow.settimeout(30)\n"
            "print(slow.recv(100).split(b'\\r\\n')[0].decode())\n"
            "print(repr(slow.recv(1000)[-60:]), repr(slow.recv(100)))\n")
    r = sandbox("python3", "-c", code, opts=["--profile", str(profile)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [str(BIG), "HTTP/1.1 408 Request Timeout"]
    assert lines[2].endswith(" b''")  # and then closed


def test_proxy_and_sandbox_die_with_a_sigkilled_launcher(server, tmp_path):
    proc = subprocess.Popen(rootsand_argv() + ["run", "-v", *allow(server), "--", "sh", "-c", "echo ready; exec sleep 600"],
                            cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        proxy_pid = pid1 = None
        for line in proc.stderr:
            if "proxy process" in line:
                proxy_pid = int(line.split("proxy process ")[1].split()[0])
            if "PID 1 is" in line:
                pid1 = int(line.split("PID 1 is ")[1].split()[0])
            if proxy_pid and pid1:
                break
        assert proc.stdout.readline() == "ready\n"
        assert still_running([proxy_pid, pid1], 0) == sorted([proxy_pid, pid1])
        proc.kill()
        proc.wait()
        assert still_running([proxy_pid, pid1], 10) == []
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_the_agent_profile_refuses_every_host_until_allowed(server, tmp_path):
    r = sandbox("sh", "-c", f"curl -sS http://host.rootsand.internal:{server}/hello; "
                "curl -s -o /dev/null -w 'CONNECT %{http_connect}' https://pypi.org/simple/ || echo ' failed'",
                opts=["--profile", "agent"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"blocked by rootsand: host.rootsand.internal:{server} is not in the allow list", "CONNECT 403 failed"]
    assert command_stderr(r) == [
        f"rootsand: blocked: host.rootsand.internal:{server} is not in the allow list",
        "rootsand: blocked: pypi.org:443 is not in the allow list",
        f"rootsand: blocked host.rootsand.internal:{server} once in all", "rootsand: blocked pypi.org:443 once in all"]
    r = sandbox("curl", "-sS", f"http://host.rootsand.internal:{server}/hello",
                opts=["--profile", "agent", *allow(server)], cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "hello from the host\n"), r.stderr


@pytest.mark.parametrize("args, message", [
    (["--allow-host", "*"], "rootsand: error: invalid --allow-host '*': a wildcard is allowed only as the first label (*.example.com)"),
    (["--allow-host", "host.rootsand.internal"], "rootsand: error: invalid --allow-host 'host.rootsand.internal': "
     "host.rootsand.internal needs a port (host.rootsand.internal:8080): only the ports you name of the host's own "
     "services are reachable"),
    (["--net", "slirp", "--allow-host", "pypi.org"], "rootsand: error: --allow-host needs --net proxy (the network mode is slirp)"),
])
def test_bad_allow_entries_are_one_error_line(args, message, tmp_path):
    r = sandbox("true", opts=args, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr.splitlines()) == (125, "", [message])


def test_a_half_closed_tunnel_still_carries_the_answer(tmp_path):
    """The client shuts its side after sending; the server answers only once it has read everything."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve_one():
        conn, _ = listener.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            conn.sendall(f"got {len(data)} bytes\n".encode())

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    code = ("import socket\n"
            "s = socket.create_connection(('127.0.0.1', 3128))\n"
            f"s.sendall(b'CONNECT host.rootsand.internal:{port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
            "head = b''\n"
            "while not head.endswith(b'\\r\\n\\r\\n'):\n"
            "    head += s.recv(1)\n"
            "print(head.split(b'\\r\\n')[0].decode())\n"
            "s.sendall(b'y' * 300000)\n"
            "s.shutdown(socket.SHUT_WR)\n"
            "print(s.makefile().read(), end='')\n")
    try:
        r = sandbox("python3", "-c", code, opts=allow(port), cwd=tmp_path, timeout=60)
    finally:
        listener.close()
    assert (r.returncode, r.stdout) == (0, "HTTP/1.1 200 Connection established\ngot 300000 bytes\n"), r.stderr


def test_half_closed_requests_keep_their_answers_while_other_traffic_runs(server, tmp_path):
    """A connection whose client has shut its side must stay alive until the answer is relayed, also
    while other connections make the proxy's garbage collector run (asyncio holds tasks weakly)."""
    code = ("import socket, threading, urllib.request\n"
            "stop = False\n"
            "def busy():\n"
            "    while not stop:\n"
            f"        urllib.request.urlopen('http://host.rootsand.internal:{server}/hello', timeout=10).read()\n"
            "threading.Thread(target=busy, daemon=True).start()\n"
            "for i in range(3):\n"
            "    s = socket.create_connection(('127.0.0.1', 3128))\n"
            f"    s.sendall(b'GET http://host.rootsand.internal:{server}/slow HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')\n"
            "    s.shutdown(socket.SHUT_WR)\n"
            "    s.settimeout(20)\n"
            "    got = b''\n"
            "    while chunk := s.recv(65536):\n"
            "        got += chunk\n"
            "    print(got.endswith(b'hello'))\n"
            "stop = True\n")
    r = sandbox("python3", "-c", code, opts=allow(server), cwd=tmp_path, timeout=90)
    assert (r.returncode, r.stdout) == (0, "True\nTrue\nTrue\n"), r.stderr
    assert "Task was destroyed" not in r.stderr
