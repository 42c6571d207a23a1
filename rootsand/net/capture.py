"""The proxy mode's capture, the pure parts: the fake addresses its DNS gives out, the DNS messages, and the
name a TLS ClientHello or an HTTP request head asks for.

Inside the sandbox every name resolves to an address of FAKE_NETWORK that stands for that name (the proxy
looks nothing up to answer), and the sandbox's network namespace routes every IPv4 address to its own
loopback, where the proxy's listeners take the connections (network.capture_setup). The proxy maps the
address a connection reached back to the name, judges (name, port) by the allow and deny lists, checks the
name the client's first bytes ask for, and connects to the name's real address from the host's side.

Stdlib only, no I/O: each parser takes bytes the sandbox sent and is bounded by them.
"""

import ipaddress

FAKE_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544's benchmark range: no one's real address
DNS_TTL = 5  # seconds: an address stands for its name only while the map holds it
MAX_HANDSHAKE = 64 * 1024  # a ClientHello larger than this is refused

# DNS (RFC 1035)
TYPE_A, CLASS_IN = 1, 1
NOERROR, FORMERR, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 3, 4, 5


class FakeAddresses:
    """Name <-> fake address (dotted, as getsockname() gives it). Addresses are given out in turn; once all
    are used the oldest name's is given to the next name (an old connection's address then stands for the
    new name, which is what is judged)."""

    def __init__(self, network=FAKE_NETWORK):
        self.first = int(network.network_address) + 1
        self.size = network.num_addresses - 2
        self.next = 0
        self.by_name: dict[str, str] = {}
        self.by_address: dict[str, str] = {}

    def address_of(self, name: str) -> str:
        address = self.by_name.get(name)
        if address is None:
            address = str(ipaddress.IPv4Address(self.first + self.next))
            self.next = (self.next + 1) % self.size
            old = self.by_address.pop(address, None)
            if old is not None:
                del self.by_name[old]
            self.by_name[name], self.by_address[address] = address, name
        return address

    def name_of(self, address: str) -> str | None:
        return self.by_address.get(address)


def is_fake(address: str) -> bool:
    try:
        return ipaddress.ip_address(address) in FAKE_NETWORK
    except ValueError:
        return False


# ------------------------------------------------------------------------------------------ DNS

def dns_question(query: bytes) -> tuple[int, str, int, int] | None:
    """(id, name, type, end of the question) of a standard query with one question; None when it is none
    (then nothing is answered). The name is as sent (case kept), labels joined by dots."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = int.from_bytes(query[0:2], "big"), int.from_bytes(query[2:4], "big"), \
        int.from_bytes(query[4:6], "big")
    if flags & 0x8000 or qdcount != 1:  # a response, or not one question
        return None
    labels, i = [], 12
    while True:
        if i >= len(query):
            return None
        length = query[i]
        if length == 0:
            i += 1
            break
        if length & 0xC0 or i + 1 + length > len(query):  # a pointer has no place in a question
            return None
        labels.append(query[i + 1:i + 1 + length])
        i += 1 + length
        if i > 12 + 255:
            return None
    if i + 4 > len(query):
        return None
    try:
        name = b".".join(labels).decode("ascii")
    except UnicodeDecodeError:
        name = ""
    return ident, name, int.from_bytes(query[i:i + 2], "big"), i + 4


def dns_answer(query: bytes, address_of) -> bytes | None:
    """The answer to `query`: an A record from address_of(name) for a type A question, no records for
    every other type (so AAAA lookups end at once and clients use the A record), NXDOMAIN when
    address_of(name) is None (no valid name), NOTIMP for other opcodes. None: not answered."""
    question = dns_question(query)
    if question is None:
        return None
    ident, name, qtype, end = question
    qclass = int.from_bytes(query[end - 2:end], "big")
    opcode = (query[2] >> 3) & 0xF
    rd = query[2] & 0x01
    answers = b""
    if opcode != 0:
        rcode = NOTIMP
    elif qclass != CLASS_IN:
        rcode = REFUSED
    else:
        address = address_of(name)
        rcode = NXDOMAIN if address is None else NOERROR
        if address is not None and qtype == TYPE_A:
            answers = (b"\xc0\x0c" + TYPE_A.to_bytes(2, "big") + CLASS_IN.to_bytes(2, "big")
                       + DNS_TTL.to_bytes(4, "big") + b"\x00\x04" + bytes(map(int, address.split("."))))
    flags = 0x8000 | (opcode << 11) | 0x0400 | (rd << 8) | 0x0080 | rcode  # QR, AA, RD as asked, RA
    header = (ident.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\x00\x01"
              + (b"\x00\x01" if answers else b"\x00\x00") + b"\x00\x00\x00\x00")
    return header + query[12:end] + answers


# ------------------------------------------------------------------------------------------ TLS

class _Reader:
    def __init__(self, data: bytes):
        self.data, self.i = data, 0

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.data):
            raise ValueError("truncated")
        self.i += n
        return self.data[self.i - n:self.i]

    def number(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.number(length_bytes))


MORE = "more"  # tls_server_name(): not all of the ClientHello has come yet


def looks_like_tls(data: bytes) -> bool:
    """The first bytes are a TLS handshake record's (type 22, version 3.x)."""
    return len(data) >= 1 and data[0] == 22 and (len(data) < 2 or data[1] == 3)


def tls_server_name(data: bytes) -> tuple[str | None, str]:
    """The server name a ClientHello at the start of `data` asks for: (name, "") when found, (None, MORE)
    when more bytes are needed, (None, why) when there is no name or `data` is no ClientHello. The
    handshake may span records; it is read up to MAX_HANDSHAKE bytes."""
    handshake = bytearray()
    i = 0
    while True:
        if len(data) < i + 5:
            return None, MORE
        kind, major, length = data[i], data[i + 1], int.from_bytes(data[i + 3:i + 5], "big")
        if kind != 22 or major != 3 or not 0 < length <= 16384 + 2048:
            return None, "not a TLS ClientHello"
        if len(data) < i + 5 + length:
            return None, MORE
        handshake += data[i + 5:i + 5 + length]
        i += 5 + length
        if handshake[0] != 1:
            return None, "not a TLS ClientHello"
        if len(handshake) >= 4:
            size = int.from_bytes(handshake[1:4], "big")
            if size > MAX_HANDSHAKE:
                return None, "a TLS ClientHello larger than 64 KiB"
            if len(handshake) >= 4 + size:
                break
    try:
        return _server_name(bytes(handshake[4:4 + size]))
    except ValueError:
        return None, "a malformed TLS ClientHello"


def _server_name(hello: bytes) -> tuple[str | None, str]:
    r = _Reader(hello)
    r.take(2 + 32)  # version, random
    r.vector(1)  # session id
    r.vector(2)  # cipher suites
    r.vector(1)  # compression methods
    if r.i == len(hello):
        return None, "a TLS ClientHello without a server name"
    extensions = _Reader(r.vector(2))
    found = None
    while extensions.i < len(extensions.data):
        kind, body = extensions.number(2), extensions.vector(2)
        if kind != 0:
            continue
        if found is not None:
            raise ValueError("two server_name extensions")
        names = _Reader(_Reader(body).vector(2))
        while names.i < len(names.data):
            name_type, name = names.number(1), names.vector(2)
            if name_type == 0:
                if found is not None:
                    raise ValueError("two host names")
                found = name
        if found is None:
            raise ValueError("a server_name extension without a host name")
    if found is None:
        return None, "a TLS ClientHello without a server name"
    try:
        return found.decode("ascii"), ""
    except UnicodeDecodeError:
        raise ValueError("a server name that is not ASCII") from None


# ------------------------------------------------------------------------------------------ HTTP

def http_host(head: bytes) -> tuple[str | None, str]:
    """The host an HTTP/1 request head (up to its blank line) names in its Host header: (host, "") or
    (None, why)."""
    lines = head.split(b"\r\n")
    request = lines[0].split(b" ")
    if len(request) != 3 or not request[2].startswith(b"HTTP/1."):
        return None, "not an HTTP/1 request"
    hosts = [line.partition(b":")[2].strip() for line in lines[1:] if line[:5].lower() == b"host:"]
    if len(hosts) != 1:
        return None, "an HTTP request without one Host header" if not hosts else "an HTTP request with two Host headers"
    try:
        return hosts[0].decode("ascii"), ""
    except UnicodeDecodeError:
        return None, "a Host header that is not ASCII"


# ------------------------------------------------------------------------------------------ the kernel's refusals

def kernel_refusal(packet: bytes) -> tuple[str, str, int] | None:
    """What the kernel refused, from a packet the refusals socket got (network.REFUSALS_FILTER): ("tcp",
    address, port) for the reset that answers a connection to a port nothing listens on (RST and ACK,
    sequence number 0; it comes from the address and port asked for), ("udp", address, port) for an ICMP
    port unreachable about a UDP datagram (not about an answer of the proxy's DNS to a client that went
    away); None for anything else, and for the sandbox's own loopback (127/8)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    start = (packet[0] & 0xF) * 4
    if packet[9] == 6 and len(packet) >= start + 14:
        flags, seq = packet[start + 13], int.from_bytes(packet[start + 4:start + 8], "big")
        if flags & 0x14 != 0x14 or seq != 0:
            return None
        kind, address, port = "tcp", packet[12:16], int.from_bytes(packet[start:start + 2], "big")
    elif packet[9] == 1 and len(packet) >= start + 8 + 20 and packet[start:start + 2] == b"\x03\x03":
        inner = packet[start + 8:]
        inner_start = (inner[0] & 0xF) * 4
        if inner[0] >> 4 != 4 or inner[9] != 17 or len(inner) < inner_start + 4:
            return None
        if int.from_bytes(inner[inner_start:inner_start + 2], "big") == 53:
            return None
        kind, address, port = "udp", inner[16:20], int.from_bytes(inner[inner_start + 2:inner_start + 4], "big")
    else:
        return None
    if address[0] == 127:
        return None
    return kind, str(ipaddress.IPv4Address(address)), port
