"""The capture's pure parts: the fake address map, the DNS codec, the TLS ClientHello's server name and the
HTTP Host, against real clients' bytes and hostile ones."""

import ipaddress
import ssl
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rootsand.net import capture


def client_hello(server_name: str | None) -> bytes:
    """What Python's ssl (OpenSSL) sends first for `server_name`."""
    context = ssl.create_default_context()
    if server_name is None:
        context.check_hostname = False
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def dns_query(name: str, qtype: int = 1, ident: int = 0x1234, flags: int = 0x0100, qclass: int = 1) -> bytes:
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".") if part) + b"\x00"
    return struct.pack(">HHHHHH", ident, flags, 1, 0, 0, 0) + labels + struct.pack(">HH", qtype, qclass)


def test_each_name_gets_its_own_fake_address_and_keeps_it():
    fake = capture.FakeAddresses()
    a, b = fake.address_of("pypi.org"), fake.address_of("github.com")
    assert (a, b, fake.address_of("pypi.org")) == ("198.18.0.1", "198.18.0.2", "198.18.0.1")
    assert (fake.name_of(a), fake.name_of(b), fake.name_of("198.18.0.3"), fake.name_of("x")) == (
        "pypi.org", "github.com", None, None)
    assert capture.is_fake(a) and capture.is_fake("198.19.255.254") and not capture.is_fake("198.20.0.1")


def test_once_all_fake_addresses_are_given_out_the_oldest_name_loses_its_own():
    fake = capture.FakeAddresses(ipaddress.ip_network("10.0.0.0/30"))  # two usable addresses
    a, b = fake.address_of("a.example"), fake.address_of("b.example")
    c = fake.address_of("c.example")
    assert c == a and fake.name_of(a) == "c.example" and fake.name_of(b) == "b.example"
    assert fake.address_of("a.example") == b  # a name asked again gets the next one
    assert len(fake.by_name) == len(fake.by_address) == 2


def test_an_a_query_is_answered_with_the_address_and_the_question_as_asked():
    query = dns_query("PyPI.org")
    answer = capture.dns_answer(query, lambda name: "198.18.0.7" if name == "PyPI.org" else None)
    ident, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", answer[:12])
    assert (ident, flags & 0x800F, bool(flags & 0x0100), qd, an, ns, ar) == (0x1234, 0x8000, True, 1, 1, 0, 0)
    assert answer[12:len(query)] == query[12:]  # the question, its case kept (0x20 randomisation)
    record = answer[len(query):]
    assert record[:10] == b"\xc0\x0c\x00\x01\x00\x01" + capture.DNS_TTL.to_bytes(4, "big")
    assert record[10:] == b"\x00\x04" + bytes([198, 18, 0, 7])


@pytest.mark.parametrize("qtype", [28, 15, 16, 65, 255])  # AAAA, MX, TXT, HTTPS, ANY
def test_other_types_get_no_records_and_no_error(qtype):
    answer = capture.dns_answer(dns_query("pypi.org", qtype), lambda name: "198.18.0.1")
    assert struct.unpack(">HH", answer[2:4] + answer[6:8]) == (0x8580, 0)  # NOERROR, no answers


def test_an_invalid_name_is_nxdomain_and_other_opcodes_or_classes_are_refused():
    assert capture.dns_answer(dns_query("bad name.example"), lambda name: None)[3] & 0xF == capture.NXDOMAIN
    assert capture.dns_answer(dns_query("a.example", flags=0x2800), lambda name: "1.2.3.4")[3] & 0xF == capture.NOTIMP
    assert capture.dns_answer(dns_query("a.example", qclass=3), lambda name: "1.2.3.4")[3] & 0xF == capture.REFUSED


@pytest.mark.parametrize("query", [
    b"", b"\x00" * 11, dns_query("a.example", flags=0x8100),  # too short, a response
    struct.pack(">HHHHHH", 1, 0x100, 2, 0, 0, 0) + b"\x01a\x00\x00\x01\x00\x01",  # two questions
    struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01",  # a pointer
    struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\x05ab",  # a label past the end
    struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\x01a\x00\x00",  # no type and class
    struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"\x3f" + b"a" * 63 + (b"\x3f" + b"a" * 63) * 4 + b"\x00\x00\x01\x00\x01",
])
def test_malformed_queries_are_not_answered(query):
    assert capture.dns_answer(query, lambda name: "198.18.0.1") is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_datagram_is_answered_or_dropped_never_an_exception(data):
    answer = capture.dns_answer(data, lambda name: "198.18.0.1")
    assert answer is None or answer[:2] == data[:2]


def test_a_real_clienthello_gives_its_server_name_whole_and_in_pieces():
    hello = client_hello("pypi.org")
    assert capture.looks_like_tls(hello) and capture.tls_server_name(hello) == ("pypi.org", "")
    for cut in (1, 5, 40, len(hello) - 1):
        assert capture.tls_server_name(hello[:cut]) == (None, capture.MORE)
    assert capture.tls_server_name(hello + b"more bytes") == ("pypi.org", "")


def test_a_clienthello_split_over_several_records_is_read_whole():
    hello = client_hello("files.pythonhosted.org")
    body = hello[5:]
    records = b"".join(hello[:3] + len(part).to_bytes(2, "big") + part for part in (body[:7], body[7:100], body[100:]))
    assert capture.tls_server_name(records) == ("files.pythonhosted.org", "")
    assert capture.tls_server_name(records[:-1]) == (None, capture.MORE)


def test_a_clienthello_without_a_server_name_or_no_clienthello_at_all_says_so():
    assert capture.tls_server_name(client_hello(None)) == (None, "a TLS ClientHello without a server name")
    assert capture.tls_server_name(b"GET / HTTP/1.1\r\n\r\n") == (None, "not a TLS ClientHello")
    assert capture.tls_server_name(b"\x16\x03\x01\x00\x05\x02\x00\x00\x01\x00") == (None, "not a TLS ClientHello")
    assert not capture.looks_like_tls(b"GET /") and not capture.looks_like_tls(b"\x16\x01")


def hello_with_extensions(extensions: bytes, size: int | None = None) -> bytes:
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + len(extensions).to_bytes(2, "big") + extensions
    handshake = b"\x01" + (size if size is not None else len(body)).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def sni(*names: bytes, kind: int = 0) -> bytes:
    entries = b"".join(bytes([kind]) + len(n).to_bytes(2, "big") + n for n in names)
    data = len(entries).to_bytes(2, "big") + entries
    return b"\x00\x00" + len(data).to_bytes(2, "big") + data


@pytest.mark.parametrize("data, why", [
    (hello_with_extensions(sni(b"a.example") + sni(b"b.example")), "a malformed TLS ClientHello"),  # two extensions
    (hello_with_extensions(sni(b"a.example", b"b.example")), "a malformed TLS ClientHello"),  # two names
    (hello_with_extensions(sni(b"a.example", kind=1)), "a malformed TLS ClientHello"),  # no host name
    (hello_with_extensions(sni("bücher.example".encode())), "a malformed TLS ClientHello"),  # not ASCII
    (hello_with_extensions(b"\x00\x00\x00\x09\x00\x20\x00"), "a malformed TLS ClientHello"),  # lengths past the end
    (hello_with_extensions(b"\xff\x01\x00\x01\x00"), "a TLS ClientHello without a server name"),  # other extensions
    (b"\x16\x03\x01\x00\x04\x01\x02\x00\x00", "a TLS ClientHello larger than 64 KiB"),  # a declared size past the bound
    (b"\x16\x03\x01\x50\x00", "not a TLS ClientHello"),  # a record above TLS's largest
])
def test_hostile_clienthellos_are_refused_with_a_reason(data, why):
    assert capture.tls_server_name(data) == (None, why)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_a_name_more_or_a_reason_never_an_exception(data):
    name, why = capture.tls_server_name(b"\x16\x03\x01" + data)
    assert (name is None) != (why == "")


def test_the_host_header_of_a_request_head():
    assert capture.http_host(b"GET / HTTP/1.1\r\nhOsT:  pypi.org:80 \r\nAccept: */*") == ("pypi.org:80", "")
    assert capture.http_host(b"GET / HTTP/1.1\r\nAccept: */*") == (None, "an HTTP request without one Host header")
    assert capture.http_host(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b") == (None, "an HTTP request with two Host headers")
    assert capture.http_host(b"SSH-2.0-OpenSSH_9.6") == (None, "not an HTTP/1 request")


def ipv4(protocol: int, source: str, destination: str, payload: bytes) -> bytes:
    return (bytes([0x45, 0]) + (20 + len(payload)).to_bytes(2, "big") + bytes(5) + bytes([protocol]) + bytes(2)
            + ipaddress.IPv4Address(source).packed + ipaddress.IPv4Address(destination).packed + payload)


def tcp(source_port: int, destination_port: int, seq: int, flags: int) -> bytes:
    return (source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big") + seq.to_bytes(4, "big") + bytes(4)
            + b"\x50" + bytes([flags]) + bytes(6))


def udp(source_port: int, destination_port: int) -> bytes:
    return source_port.to_bytes(2, "big") + destination_port.to_bytes(2, "big") + b"\x00\x09\x00\x00"


def icmp_unreachable(original: bytes, code: int = 3) -> bytes:
    return bytes([3, code]) + bytes(6) + original


@pytest.mark.parametrize("packet, refused", [
    # the kernel's answer to a SYN for a port nothing listens on: RST+ACK, sequence 0, from the target
    (ipv4(6, "192.0.2.1", "192.0.2.1", tcp(22, 40000, 0, 0x14)), ("tcp", "192.0.2.1", 22)),
    (ipv4(6, "198.18.0.3", "198.18.0.3", tcp(25, 40000, 0, 0x14)), ("tcp", "198.18.0.3", 25)),
    (ipv4(6, "198.18.0.3", "198.18.0.3", tcp(443, 40000, 12345, 0x14)), None),  # a reset in a connection
    (ipv4(6, "198.18.0.3", "198.18.0.3", tcp(443, 40000, 0, 0x04)), None),  # no ACK
    (ipv4(6, "127.0.0.1", "127.0.0.1", tcp(5555, 40000, 0, 0x14)), None),  # the sandbox's own loopback
    (ipv4(1, "192.0.2.1", "192.0.2.1", icmp_unreachable(ipv4(17, "192.0.2.1", "192.0.2.1", udp(40000, 9999)))),
     ("udp", "192.0.2.1", 9999)),
    (ipv4(1, "8.8.8.8", "8.8.8.8", icmp_unreachable(ipv4(17, "8.8.8.8", "8.8.8.8", udp(53, 40000)))), None),  # DNS's
    (ipv4(1, "1.2.3.4", "1.2.3.4", icmp_unreachable(ipv4(17, "1.2.3.4", "1.2.3.4", udp(1, 2)), code=1)), None),
    (ipv4(1, "1.2.3.4", "1.2.3.4", icmp_unreachable(ipv4(6, "1.2.3.4", "1.2.3.4", udp(1, 2)))), None),  # not UDP
    (ipv4(1, "1.2.3.4", "1.2.3.4", icmp_unreachable(b"\x45")), None),  # truncated
    (ipv4(17, "1.2.3.4", "1.2.3.4", udp(1, 2)), None), (b"\x60" + bytes(39), None), (b"", None),
])
def test_the_kernels_refusals_are_told_from_other_packets(packet, refused):
    assert capture.kernel_refusal(packet) == refused


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_any_packet_is_a_refusal_or_none_never_an_exception(data):
    refused = capture.kernel_refusal(b"\x45" + data)
    assert refused is None or refused[0] in ("tcp", "udp")
