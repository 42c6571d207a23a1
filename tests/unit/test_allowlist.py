"""The proxy mode's rules as pure functions, and the proxy's order of work: judge, then look up."""

import asyncio
import json

import pytest

from rootsand.errors import RootsandError
from rootsand.net import proxy
from rootsand.net.allowlist import decide, parse_entries, parse_entry, vet

ALLOW = parse_entries(["pypi.org", "*.github.com", "files.example:8443", "10.1.2.3:443", "[fd00::1]:443",
                       "host.rootsand.internal:8080"])


@pytest.mark.parametrize("host, port, allowed", [
    ("pypi.org", 443, True), ("pypi.org", 80, True), ("PyPI.org.", 443, True), ("pypi.org", 8080, False),
    ("www.pypi.org", 443, False), ("evilpypi.org", 443, False),
    ("api.github.com", 443, True), ("a.b.github.com", 80, True), ("github.com", 443, False),
    ("xgithub.com", 443, False), ("github.com.evil.net", 443, False),
    ("files.example", 8443, True), ("files.example", 443, False),
    ("10.1.2.3", 443, True), ("10.1.2.3", 80, False), ("10.1.2.4", 443, False),
    ("fd00::1", 443, True), ("[fd00::1]", 443, True), ("fd00:0::1", 443, True),
    ("host.rootsand.internal", 8080, True), ("host.rootsand.internal", 80, False),
    ("127.0.0.1", 8080, False), ("localhost", 8080, False),
    ("", 80, False), ("bad host", 80, False), ("pypi.org", 0, False), ("a" * 300, 80, False),
])
def test_matching(host, port, allowed):
    assert decide(host, port, ALLOW, []).allowed is allowed


def test_a_name_is_never_matched_by_an_address_entry_nor_the_other_way():
    assert not decide("3.2.1.10.in-addr.arpa", 443, ALLOW, []).allowed
    assert not decide("1.2.3.4", 443, parse_entries(["*.example.com"]), []).allowed
    assert not decide("2130706433", 80, parse_entries(["pypi.org"]), []).allowed  # 127.0.0.1 as a number


def test_deny_wins_on_every_port():
    deny = parse_entries(["evil.github.com"], "deny entry")
    assert not decide("evil.github.com", 443, ALLOW, deny).allowed
    assert decide("evil.github.com", 443, ALLOW, deny).reason == "evil.github.com:443 is in the deny list (evil.github.com)"
    assert decide("good.github.com", 443, ALLOW, deny).allowed


def test_refusal_reason_names_host_and_port():
    assert decide("example.com", 80, ALLOW, []).reason == "example.com:80 is not in the allow list"
    assert decide("::1", 80, ALLOW, []).reason == "[::1]:80 is not in the allow list"


@pytest.mark.parametrize("text, message", [
    ("*", "a wildcard is allowed only as the first label"),
    ("*.com", "would match a whole top-level domain"),
    ("a.*.com", "a wildcard is allowed only as the first label"),
    ("pypi.org:0", "the port must be a number from 1 to 65535"),
    ("pypi.org:http", "the port must be a number"),
    ("*.10.0.0.1", "an IP address takes no wildcard"),
    ("host.rootsand.internal", "needs a port"),
    ("bad_name!", "is not a host name"),
    ("", "expected HOST"),
])
def test_invalid_entries(text, message):
    with pytest.raises(RootsandError) as e:
        parse_entry(text, "--allow-host")
    assert message in e.value.message and e.value.message.startswith("invalid --allow-host")


@pytest.mark.parametrize("text, message", [
    ("*.rootsand.internal", "it matches host.rootsand.internal, the host's own loopback, which needs a port"),
    ("*.Rootsand.Internal.", "it matches host.rootsand.internal, the host's own loopback, which needs a port"),
    ("*.internal", "would match a whole top-level domain"),
])
def test_a_wildcard_that_matches_the_hosts_loopback_needs_a_port(text, message):
    """Issue 18, finding 5: *.rootsand.internal opened the host's loopback on ports 80 and 443."""
    with pytest.raises(RootsandError) as e:
        parse_entry(text, "--allow-host")
    assert message in e.value.message


def test_the_wildcards_error_says_what_to_write():
    with pytest.raises(RootsandError) as e:
        parse_entry("*.rootsand.internal", "--allow-host")
    assert e.value.message == (
        "invalid --allow-host '*.rootsand.internal': it matches host.rootsand.internal, the host's own loopback, "
        "which needs a port (host.rootsand.internal:8080 or *.rootsand.internal:8080): only the ports you name of "
        "the host's own services are reachable")


def test_a_wildcard_with_a_port_reaches_only_that_port_of_the_hosts_loopback():
    allow = parse_entries(["*.rootsand.internal:8080"])
    assert decide("host.rootsand.internal", 8080, allow, []).allowed
    assert not decide("host.rootsand.internal", 80, allow, []).allowed
    assert not decide("host.rootsand.internal", 443, allow, []).allowed
    assert parse_entries(["*.rootsand.internal"], "deny entry")[0].port is None  # a deny entry denies every port


def test_international_names_compare_as_idna():
    entry = parse_entries(["bücher.example"])
    assert entry[0].host == "xn--bcher-kva.example"
    assert decide("BÜCHER.example", 443, entry, []).allowed


@pytest.mark.parametrize("addresses, kept", [
    (["151.101.0.223"], ["151.101.0.223"]),
    (["127.0.0.1"], []), (["10.0.0.5"], []), (["192.168.1.1"], []), (["169.254.169.254"], []),
    (["100.64.0.1"], []), (["::1"], []), (["fe80::1%2"], []), (["fd12::1"], []), (["0.0.0.0"], []),
    (["::ffff:127.0.0.1"], []), (["64:ff9b::a00:1"], []), (["224.0.0.1"], []),
    (["127.0.0.1", "151.101.0.223"], ["151.101.0.223"]),
    (["10.1.2.3"], ["10.1.2.3"]),  # named by an address entry for that port
])
def test_after_the_lookup_only_public_or_listed_addresses(addresses, kept):
    decision = decide("pypi.org", 443, ALLOW, [])
    got, why = vet("pypi.org", 443, decision, addresses, ALLOW)
    assert got == kept
    if not kept:
        address = addresses[0].split("%")[0]
        assert why == (f"pypi.org:443 resolves to {address}, a private, loopback or reserved address, refused against "
                       f"DNS rebinding: to reach it, allow that address too (--allow-host {address})")


def test_the_reserved_address_reason_names_the_entry_with_its_port():
    decision = decide("mirror.example", 8443, parse_entries(["mirror.example:8443"]), [])
    assert vet("mirror.example", 8443, decision, ["fd00::8"], [])[1].endswith("(--allow-host [fd00::8]:8443)")


def test_a_listed_name_on_another_port_is_refused_naming_its_ports():
    allow = parse_entries(["pypi.org", "pypi.org:8443", "*.example.com:9000"])
    assert decide("pypi.org", 22, allow, []).reason == "pypi.org:22: port 22 is not allowed for pypi.org (allowed: 80, 443, 8443)"
    assert decide("a.example.com", 80, allow, []).reason == (
        "a.example.com:80: port 80 is not allowed for a.example.com (allowed: 9000)")


def test_host_internal_and_address_entries_need_no_lookup():
    assert vet("host.rootsand.internal", 8080, decide("host.rootsand.internal", 8080, ALLOW, []), [], ALLOW)[0] == [
        "127.0.0.1", "::1"]
    assert vet("10.1.2.3", 443, decide("10.1.2.3", 443, ALLOW, []), [], ALLOW)[0] == ["10.1.2.3"]


def run_upstream(host, port, answers):
    """proxy._open_upstream with a resolver that records its calls and answers from `answers`."""
    calls = []

    async def resolver(name, port):
        calls.append((name, port))
        return answers

    config = proxy.Config(["pypi.org", "*.github.com"], [], 1.0, resolver=resolver)
    config.say = lambda text: calls.append(("said", text))
    config.status_fd = None
    upstream, failure = asyncio.run(proxy._open_upstream(host, port, config))
    return upstream, failure, calls


def test_a_name_not_listed_is_refused_before_any_lookup():
    upstream, failure, calls = run_upstream("evil.example", 443, ["151.101.0.223"])
    assert upstream is None and failure == ("evil.example:443 is not in the allow list", "blocked")
    assert calls == [("said", "blocked: evil.example:443 is not in the allow list")]


def test_a_listed_name_resolving_to_loopback_is_refused_after_the_lookup():
    upstream, failure, calls = run_upstream("api.github.com", 443, ["127.0.0.1"])
    assert upstream is None and failure[1] == "blocked" and "resolves to 127.0.0.1" in failure[0]
    assert calls == [("api.github.com", 443), ("said", f"blocked: {failure[0]}")]


def test_blocked_targets_are_said_once_per_reason_and_counted_at_the_end(tmp_path):
    said = []
    with open(tmp_path / "status", "w") as status:
        config = proxy.Config([], [], 1.0, status_fd=status.fileno())
        config.say = said.append
        for _ in range(3):
            config.blocked("a.example:80", "a.example:80 is not in the allow list")
        config.blocked("b.example:443", "b.example:443: no TLS ClientHello on port 443")
        config.blocked("a.example:80", "a.example:80: the Host header is 'c', another host than a.example")
        config.summary()
    assert said == ["blocked: a.example:80 is not in the allow list", "blocked: b.example:443: no TLS ClientHello on port 443",
                    "blocked: a.example:80: the Host header is 'c', another host than a.example",
                    "blocked a.example:80 4 times in all", "blocked b.example:443 once in all"]
    lines = [json.loads(line) for line in (tmp_path / "status").read_text().splitlines()]
    assert lines[0] == {"blocked": "a.example:80", "reason": "a.example:80 is not in the allow list"}
    assert lines[-2:] == [{"blocked": "a.example:80", "reason": "a.example:80 is not in the allow list", "count": 4},
                          {"blocked": "b.example:443", "reason": "b.example:443: no TLS ClientHello on port 443", "count": 1}]


def test_the_origin_form_head_drops_hop_by_hop_headers():
    import h11
    from urllib.parse import urlsplit

    request = h11.Request(method="GET", target="http://pypi.org:8080/simple/?q=1", headers=[
        ("Host", "pypi.org:8080"), ("Proxy-Connection", "keep-alive"), ("Proxy-Authorization", "Basic eA=="),
        ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Accept", "*/*")])
    head = proxy._origin_form_head(request, urlsplit("http://pypi.org:8080/simple/?q=1"))
    assert head == (b"GET /simple/?q=1 HTTP/1.1\r\nHost: pypi.org:8080\r\naccept: */*\r\nConnection: close\r\n\r\n")


def test_refused_targets_said_are_capped():
    said = []
    config = proxy.Config([], [], 1.0)
    config.say = said.append
    for i in range(proxy.MAX_REPORTED + 50):
        config.blocked(f"h{i}.example:80", "no")
    assert len(said) == proxy.MAX_REPORTED + 1
    assert said[-1] == f"blocked more than {proxy.MAX_REPORTED} targets or reasons: not naming the others"
    config.summary()
    assert len(said) == 2 * proxy.MAX_REPORTED + 2
    assert said[-1] == "blocked other targets 50 times in all"


def test_a_port_with_many_leading_zeros_is_refused_and_the_proxy_survives_odd_requests():
    with pytest.raises(RootsandError):
        parse_entry("pypi.org:" + "0" * 70 + "443")

    async def scenario():
        config = proxy.Config(["host.rootsand.internal:9"], [], 1.0)
        config.say = lambda text: None
        server = await proxy.listen(config, host="127.0.0.1", port=0)
        port = server.sockets[0].getsockname()[1]
        answers = []
        for head in (b"GET http://host.rootsand.internal:" + b"0" * 70 + b"9/ HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"CONNECT host.rootsand.internal:" + b"0" * 70 + b"9 HTTP/1.1\r\n\r\n",
                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"\x00\xff garbage\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head)
            answers.append((await reader.read()).split(b"\r\n")[0])
            writer.close()
        server.close()
        return answers

    assert asyncio.run(scenario()) == [b"HTTP/1.1 400 Bad Request"] * 4


def test_a_tunnel_carries_everything_both_ways_while_holding_one_read_per_direction():
    """Issue 18, finding 3: the proxy reads a side only while the other has taken all it was given, so a
    client that reads slowly makes it hold at most one read per direction, not all the upstream sends."""
    import socket

    size = 4 << 20

    async def scenario():
        async def echo(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = upstream.sockets[0].getsockname()[1]
        config = proxy.Config([f"host.rootsand.internal:{port}"], [], 5.0)
        server = await proxy.listen(config, host="127.0.0.1", port=0)
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel buffers little for it
        client.connect(server.sockets[0].getsockname())
        reader, writer = await asyncio.open_connection(sock=client)
        writer.write(f"CONNECT host.rootsand.internal:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")

        async def send():
            for _ in range(size >> 20):
                writer.write(bytes(range(256)) * 4096)
                await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        got, most = bytearray(), 0
        while data := await reader.read(16384):
            got += data
            most = max(most, config.held)
            await asyncio.sleep(0.001)  # a slow reader
        await sender
        writer.close()
        server.close()
        upstream.close()
        return head, got == bytes(range(256)) * (size >> 8), most

    head, same, most = asyncio.run(scenario())
    assert (head, same) == (b"HTTP/1.1 200 Connection established\r\n\r\n", True)
    assert most <= 2 * proxy.CHUNK
