"""--net proxy's capture: clients that ignore the proxy variables (Node's fetch, curl --noproxy '*', a plain
socket with ssl) are judged by the same lists, by the name they asked for; everything else is refused at
once, and each refusal says why.

The host's servers are on this machine's loopback, reached as host.rootsand.internal:PORT; every other
name is refused before any lookup, so no traffic leaves the machine.
"""

import http.server
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading

import pytest

from conftest import command_stderr, sandbox

NAME = "host.rootsand.internal"
# The host's first address for localhost, which the proxy's refusal names: ::1 where /etc/hosts lists it
# (Debian's own /etc/hosts does), 127.0.0.1 where it does not.
LOCALHOST = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)[0][4][0]
NO_PROXY_VARS = ["env", "-u", "HTTP_PROXY", "-u", "HTTPS_PROXY", "-u", "ALL_PROXY", "-u", "http_proxy", "-u",
                 "https_proxy", "-u", "all_proxy"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = f"hello {self.path} for {self.headers.get('Host')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(httpd):
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for host.rootsand.internal: (certificate file, key file)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={NAME}",
                    "-addext", f"subjectAltName=DNS:{NAME}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def ca_file(certificate, tmp_path) -> str:
    """The certificate where the sandbox sees it (the current directory is the one host directory it has)."""
    (tmp_path / "ca.pem").write_bytes(certificate[0].read_bytes())
    return str(tmp_path / "ca.pem")


@pytest.fixture(scope="module")
def servers(certificate):
    """(HTTP port, HTTPS port) of servers on the host's 127.0.0.1."""
    plain = serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler))

    class TLSServer(http.server.ThreadingHTTPServer):
        def get_request(self):
            conn, address = super().get_request()
            return context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), address

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    tls = serve(TLSServer(("127.0.0.1", 0), Handler))
    yield plain.server_address[1], tls.server_address[1]
    for httpd in (plain, tls):
        httpd.shutdown()
        httpd.server_close()


def allow(*ports):
    return [arg for port in ports for arg in ("--allow-host", f"{NAME}:{port}")]


def status_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_node_fetch_and_curl_without_the_proxy_variables_reach_an_allowed_host(servers, certificate, tmp_path):
    http_port, tls_port = servers
    ca = ca_file(certificate, tmp_path)
    fetch = ("fetch(process.argv[1]).then(r => r.text()).then(t => process.stdout.write(t), "
             "e => { console.log('failed', e.cause && e.cause.code); process.exitCode = 3 })")
    script = (f"curl -sS --noproxy '*' http://{NAME}:{http_port}/a; "
              f"node -e \"$FETCH\" http://{NAME}:{http_port}/b; "
              f"NODE_EXTRA_CA_CERTS={ca} node -e \"$FETCH\" https://{NAME}:{tls_port}/c; "
              f"curl -sS --noproxy '*' --cacert {ca} https://{NAME}:{tls_port}/d")
    r = sandbox(*NO_PROXY_VARS, f"FETCH={fetch}", "sh", "-c", script, opts=allow(http_port, tls_port),
                cwd=tmp_path, timeout=60)
    assert (r.returncode, command_stderr(r)) == (0, [])
    assert r.stdout.splitlines() == [f"hello /{path} for {NAME}:{port}" for path, port in
                                     (("a", http_port), ("b", http_port), ("c", tls_port), ("d", tls_port))]


def test_a_python_ssl_socket_reaches_an_allowed_host_by_its_server_name(servers, certificate, tmp_path):
    tls_port = servers[1]
    code = ("import socket, ssl, sys\n"
            f"context = ssl.create_default_context(cafile='{ca_file(certificate, tmp_path)}')\n"
            f"with socket.create_connection(('{NAME}', {tls_port})) as raw:\n"
            f"    with context.wrap_socket(raw, server_hostname='{NAME}') as s:\n"
            "        s.sendall(b'GET /e HTTP/1.0\\r\\nHost: x\\r\\n\\r\\n')\n"
            "        print(s.makefile('rb').read().split(b'\\r\\n\\r\\n')[1].decode(), end='')\n")
    r = sandbox(*NO_PROXY_VARS, "python3", "-c", code, opts=allow(tls_port), cwd=tmp_path)
    assert (r.returncode, r.stdout, command_stderr(r)) == (0, "hello /e for x\n", [])


def test_a_clienthello_naming_another_host_is_reset_and_said_why(servers, tmp_path):
    tls_port = servers[1]
    status = tmp_path / "status.jsonl"
    code = ("import socket, ssl\n"
            "context = ssl.create_default_context()\n"
            "context.check_hostname, context.verify_mode = False, ssl.CERT_NONE\n"
            f"raw = socket.create_connection(('{NAME}', {tls_port}))\n"
            "try:\n"
            "    context.wrap_socket(raw, server_hostname='other.example')\n"
            "except (ConnectionResetError, ssl.SSLError) as e:\n"
            "    print('refused', type(e).__name__)\n")
    r = sandbox(*NO_PROXY_VARS, "python3", "-c", code, opts=[*allow(tls_port), "--json-status", str(status)],
                cwd=tmp_path)
    why = (f"{NAME}:{tls_port}: the TLS server name is 'other.example', another host than {NAME}")
    assert (r.returncode, r.stdout.split()[0]) == (0, "refused"), r.stderr
    assert command_stderr(r) == [f"rootsand: blocked: {why}", f"rootsand: blocked {NAME}:{tls_port} once in all"]
    lines = status_lines(status)
    assert {"blocked": f"{NAME}:{tls_port}", "reason": why} in lines
    assert {"blocked": f"{NAME}:{tls_port}", "reason": why, "count": 1} in lines


def test_every_name_resolves_to_a_fake_address_and_nothing_else_answers(tmp_path):
    code = ("import socket\n"
            "for name in ('pypi.org', 'not-allowed.example', 'pypi.org'):\n"
            "    print(name, sorted({(i[0].name, i[4][0]) for i in socket.getaddrinfo(name, 443)}))\n")
    r = sandbox("sh", "-c", f"getent hosts pypi.org github.com; python3 -c \"{code}\"", opts=["--net", "proxy"],
                cwd=tmp_path)
    assert (r.returncode, command_stderr(r)) == (0, [])
    lines = r.stdout.splitlines()
    (a, pypi), (b, github) = lines[0].split(), lines[1].split()
    assert (pypi, github) == ("pypi.org", "github.com") and a != b
    assert all(ipaddress.ip_address(x) in ipaddress.ip_network("198.18.0.0/15") for x in (a, b))
    other = lines[3].split("'")[3]
    assert lines[2:] == [f"pypi.org [('AF_INET', '{a}')]", f"not-allowed.example [('AF_INET', '{other}')]",
                         f"pypi.org [('AF_INET', '{a}')]"]


def test_udp_and_address_literals_are_refused_at_once_and_said_why(tmp_path):
    status = tmp_path / "status.jsonl"
    code = ("import errno, socket\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "u.connect(('192.0.2.1', 9999))\n"
            "u.send(b'x')\n"
            "try:\n"
            "    u.recv(10)\n"
            "except OSError as e:\n"
            "    print('udp', errno.errorcode[e.errno])\n"
            "for address, port in (('192.0.2.1', 22), ('192.0.2.1', 443), ('198.18.200.200', 443)):\n"
            "    try:\n"
            "        s = socket.create_connection((address, port))\n"
            "        s.sendall(b'\\x16\\x03\\x01')\n"
            "        print(port, s.recv(10))\n"
            "    except OSError as e:\n"
            "        print(port, errno.errorcode[e.errno])\n"
            "try:\n"
            "    socket.create_connection(('2001:db8::1', 443))\n"
            "except OSError as e:\n"
            "    print('v6', errno.errorcode[e.errno])\n")
    script = f"python3 -c \"{code}\"; curl -sS --noproxy '*' http://192.0.2.1/"
    r = sandbox(*NO_PROXY_VARS, "sh", "-c", script, opts=["--net", "proxy", "--json-status", str(status)],
                cwd=tmp_path, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "udp ECONNREFUSED", "22 ECONNREFUSED", "443 ECONNRESET", "443 ECONNRESET", "v6 ENETUNREACH",
        "blocked by rootsand: 192.0.2.1:80 is not in the allow list"]
    unknown = ("198.18.200.200:443 is no address rootsand's DNS gave out, or it stands for no name any more "
               "(look the name up again)")
    # What the kernel refused (UDP, a port nothing listens on) is seen by a packet socket, read in turn
    # with the proxy's listeners: the order of the lines between them is the proxy loop's.
    reasons = {"192.0.2.1:9999/udp": "192.0.2.1:9999/udp: the proxy mode carries no UDP (DNS it answers itself)",
               "192.0.2.1:22": "192.0.2.1:22 is not in the allow list",
               "192.0.2.1:443": "192.0.2.1:443 is not in the allow list", "198.18.200.200:443": unknown,
               "192.0.2.1:80": "192.0.2.1:80 is not in the allow list"}
    lines = command_stderr(r)
    assert sorted(lines[:5]) == sorted(f"rootsand: blocked: {why}" for why in reasons.values())
    assert sorted(lines[5:]) == sorted(f"rootsand: blocked {what} once in all" for what in reasons)
    lines = status_lines(status)
    for what, why in reasons.items():
        assert {"blocked": what, "reason": why} in lines and {"blocked": what, "reason": why, "count": 1} in lines
    assert lines[-1]["exit-code"] == 0


def test_port_80_is_judged_by_the_host_header(servers, tmp_path):
    http_port = servers[0]
    r = sandbox(*NO_PROXY_VARS, "sh", "-c", f"curl -sS -H 'Host: evil.example' http://{NAME}:{http_port}/g; echo",
                opts=allow(http_port), cwd=tmp_path)
    # not port 80: an HTTP request on another port is not judged by its Host (only TLS is, by its name)
    assert r.stdout.splitlines()[0] == "hello /g for evil.example"
    r = sandbox(*NO_PROXY_VARS, "curl", "-sS", "-H", "Host: evil.example", "http://pypi.org/", opts=["--allow-host", "pypi.org"],
                cwd=tmp_path)
    why = "pypi.org:80: the Host header is 'evil.example', another host than pypi.org"
    assert r.stdout == f"blocked by rootsand: {why}\n"
    assert command_stderr(r) == [f"rootsand: blocked: {why}", "rootsand: blocked pypi.org:80 once in all"]


def test_refusals_say_why_and_are_counted_at_the_end(servers, tmp_path):
    http_port = servers[0]
    status = tmp_path / "status.jsonl"
    profile = tmp_path / "p.toml"
    profile.write_text(f'extends = "default"\n[network]\nmode = "proxy"\nallow = ["{NAME}:{http_port}", "localhost", '
                       '"*.example.org"]\ndeny = ["bad.example.org"]\n')
    script = (f"for i in 1 2 3; do curl -sS --noproxy '*' http://example.com/; done; "
              f"curl -sS http://{NAME}:{http_port + 1}/; "
              "curl -sS http://bad.example.org/; "
              "curl -sS --noproxy '' -x http://127.0.0.1:3128 http://localhost/")
    r = sandbox("sh", "-c", script, opts=["--profile", str(profile), "--json-status", str(status)],
                cwd=tmp_path)
    reasons = ["example.com:80 is not in the allow list",
               f"{NAME}:{http_port + 1}: port {http_port + 1} is not allowed for {NAME} (allowed: {http_port})",
               "bad.example.org:80 is in the deny list (bad.example.org)",
               f"localhost:80 resolves to {LOCALHOST}, a private, loopback or reserved address, refused against DNS "
               f"rebinding: to reach it, allow that address too (--allow-host {LOCALHOST})"]
    assert r.stdout.splitlines() == [f"blocked by rootsand: {why}" for why in [reasons[0]] * 3 + reasons[1:]]
    targets = ["example.com:80", f"{NAME}:{http_port + 1}", "bad.example.org:80", "localhost:80"]
    assert command_stderr(r) == [f"rootsand: blocked: {why}" for why in reasons] + [
        "rootsand: blocked example.com:80 3 times in all"] + [f"rootsand: blocked {t} once in all" for t in targets[1:]]
    lines = status_lines(status)
    for target, why in zip(targets, reasons):
        assert {"blocked": target, "reason": why} in lines
    assert {"blocked": "example.com:80", "reason": reasons[0], "count": 3} in lines
    assert lines[-1] == {"exit-code": 0}


def test_a_client_that_resolves_names_itself_for_socks_asks_for_the_name_it_looked_up(servers, tmp_path):
    # socks5:// (not socks5h://): curl looks the name up through the sandbox's DNS and sends the proxy the
    # fake address, which stands for the name it asked for.
    http_port = servers[0]
    r = sandbox("curl", "-sS", "-x", "socks5://127.0.0.1:3128", f"http://{NAME}:{http_port}/h",
                opts=allow(http_port), cwd=tmp_path)
    assert (r.returncode, r.stdout, command_stderr(r)) == (0, f"hello /h for {NAME}:{http_port}\n", [])


def test_an_allowed_name_on_a_reserved_address_says_what_to_add_once_per_connection(tmp_path):
    # "localhost." is no name of the sandbox's /etc/hosts: the proxy's DNS answers it, and the host resolves
    # it to its own loopback, which an allowed name may not lead to unless the address is allowed too.
    code = ("import socket\n"
            "for i in range(2):\n"
            "    s = socket.create_connection(('localhost.', 80))\n"
            "    s.sendall(b'GET / HTTP/1.1\\r\\nHost: localhost\\r\\n\\r\\n')\n"
            "    print(s.makefile('rb').read().split(b'\\r\\n\\r\\n')[1].decode(), end='')\n")
    r = sandbox("python3", "-c", code, opts=["--allow-host", "localhost"], cwd=tmp_path)
    why = (f"localhost:80 resolves to {LOCALHOST}, a private, loopback or reserved address, refused against DNS "
           f"rebinding: to reach it, allow that address too (--allow-host {LOCALHOST})")
    assert (r.returncode, r.stdout) == (0, f"blocked by rootsand: {why}\n" * 2), r.stderr
    assert command_stderr(r) == [f"rootsand: blocked: {why}", "rootsand: blocked localhost:80 2 times in all"]


def test_hostile_first_bytes_are_refused_and_the_proxy_serves_on(servers, tmp_path):
    http_port = servers[0]
    code = ("import socket\n"
            "for data in (b'\\x16\\x03\\x01\\x00\\x04\\x01\\x02\\x00\\x00', b'\\x16\\x03\\x01\\x00\\x04\\x01\\x00\\x80\\x00' + b'\\x16\\x03\\x01\\x00\\x01\\x00' * 30000,\n"
            "             b'SSH-2.0-x\\r\\n', b''):\n"
            "    s = socket.create_connection(('pypi.org', 443))\n"
            "    try:\n"
            "        s.sendall(data)\n"
            "        s.shutdown(socket.SHUT_WR)\n"
            "        print(s.recv(10))\n"
            "    except (ConnectionResetError, BrokenPipeError):  # the reset may come while it sends\n"
            "        print('reset')\n"
            "import urllib.request\n"
            f"print(urllib.request.urlopen('http://{NAME}:{http_port}/i').read().decode(), end='')\n")
    r = sandbox(*NO_PROXY_VARS, "python3", "-c", code, opts=["--allow-host", "pypi.org", *allow(http_port)],
                cwd=tmp_path)
    assert (r.returncode, r.stdout) == (0, "reset\n" * 4 + f"hello /i for {NAME}:{http_port}\n"), r.stderr
    reasons = ["a TLS ClientHello larger than 64 KiB", "a TLS ClientHello larger than 64 KiB",
               "no TLS ClientHello on port 443", "the client ended before asking for a host"]
    assert command_stderr(r) == [f"rootsand: blocked: pypi.org:443: {why}" for why in dict.fromkeys(reasons)] + [
        "rootsand: blocked pypi.org:443 4 times in all"]


def test_more_ports_than_the_capture_takes_is_one_error_line(tmp_path):
    opts = [arg for port in range(2000, 2249) for arg in ("--allow-host", f"h.example:{port}")]
    r = sandbox("true", opts=opts, cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr.splitlines()) == (125, "", [
        "rootsand: error: the allow entries name 249 ports: the proxy mode captures at most 248 besides 80 and 443"])
    assert sandbox("true", opts=opts[:-2], cwd=tmp_path).returncode == 0
