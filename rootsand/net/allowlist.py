"""The proxy mode's rules: which HOST:PORT a sandbox may reach, decided before and after the name lookup.

Pure: parse_entry() and decide() look at strings only, vet() at the addresses a lookup returned. The
proxy (proxy.py) asks decide() before it resolves anything, so a name that is not listed never reaches
DNS, and vet() after, so an allowed name cannot lead to the host's own services or the local network
(DNS rebinding) unless the entry names that address itself.

Entries:
    pypi.org              that name, ports 80 and 443
    *.github.com          its subdomains only (not github.com itself), ports 80 and 443
    pypi.org:8443         that port only
    10.1.2.3[:443]        an IP literal: only requests for that address (a name never matches it); it also
                          lets a listed name resolve to it
    [fd00::1]:443         an IPv6 literal, in brackets when a port follows
    host.rootsand.internal:8080   the host's own loopback, on that port only (a port is required, also of a
                                  wildcard that matches it: *.rootsand.internal:8080)
"""

import ipaddress
import re

from rootsand.errors import RootsandError

HOST_INTERNAL = "host.rootsand.internal"  # as podman's host.containers.internal: the host's loopback
DEFAULT_PORTS = (80, 443)
_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")


class Entry:
    """One allow or deny entry: a name, a *.suffix or an address, and a port (None: 80 and 443)."""

    __slots__ = ("text", "host", "wildcard", "address", "port")

    def __init__(self, text: str, host: str, wildcard: bool, address, port: int | None):
        self.text, self.host, self.wildcard, self.address, self.port = text, host, wildcard, address, port

    def port_matches(self, port: int, any_port: bool = False) -> bool:
        if self.port is not None:
            return port == self.port
        return any_port or port in DEFAULT_PORTS

    def host_matches(self, host: str, address) -> bool:
        if self.address is not None:
            return address is not None and address == self.address
        if address is not None:
            return False  # a request for an address is allowed by an address entry only
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __repr__(self) -> str:
        return f"Entry({self.text!r})"


def normalise_host(host: str) -> str | None:
    """A requested host as it is compared: lower case, no trailing dot, IDNA for other scripts, brackets
    off an IPv6 literal; None when it is no valid host name or address."""
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if _address(host) is not None:
        return str(_address(host))
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]  # the root label: pypi.org. is pypi.org
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if not host or len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return host


def _address(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def split_host_port(text: str) -> tuple[str, str | None]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address -> (host, port text or None)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return text, None
        rest = text[end + 1:]
        return text[1:end], rest[1:] if rest.startswith(":") else (None if not rest else rest)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None  # a name, or an IPv6 address without brackets (no port possible)


def parse_entry(text: str, what: str = "allow entry") -> Entry:
    """One entry of --allow-host, [network] allow or deny; a RootsandError naming it when it is invalid."""
    if not isinstance(text, str) or not text.strip():
        raise RootsandError(f"invalid {what} {text!r}: expected HOST, *.DOMAIN, an IP address, each with an optional :PORT")
    raw = text.strip()
    host, port_text = split_host_port(raw)
    port = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise RootsandError(f"invalid {what} {text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    wildcard = host.startswith("*.")
    if wildcard:
        host = host[2:]
    if "*" in host:
        raise RootsandError(f"invalid {what} {text!r}: a wildcard is allowed only as the first label (*.example.com)")
    address = _address(host)
    if address is not None:
        if wildcard:
            raise RootsandError(f"invalid {what} {text!r}: an IP address takes no wildcard")
        return Entry(raw, str(address), False, address, port)
    name = normalise_host(host)
    if name is None:
        raise RootsandError(f"invalid {what} {text!r}: {host!r} is not a host name")
    if wildcard and "." not in name:
        raise RootsandError(f"invalid {what} {text!r}: *.{name} would match a whole top-level domain")
    if name == HOST_INTERNAL and (port is None or wildcard) and what != "deny entry":
        raise RootsandError(f"invalid {what} {text!r}: {HOST_INTERNAL} needs a port ({HOST_INTERNAL}:8080): "
                            "only the ports you name of the host's own services are reachable")
    entry = Entry(raw, name, wildcard, None, port)
    if port is None and what != "deny entry" and entry.host_matches(HOST_INTERNAL, None):
        # a wildcard without a port would open the host's loopback on 80 and 443, which nobody named
        raise RootsandError(f"invalid {what} {text!r}: it matches {HOST_INTERNAL}, the host's own loopback, "
                            f"which needs a port ({HOST_INTERNAL}:8080 or *.{name}:8080): only the ports you name "
                            "of the host's own services are reachable")
    return entry


def parse_entries(texts, what: str = "allow entry") -> list[Entry]:
    return [parse_entry(t, what) for t in texts]


class Decision:
    """What decide() or vet() found: allowed or not, the entry that allowed, and why not (for the 403)."""

    __slots__ = ("allowed", "entry", "reason")

    def __init__(self, allowed: bool, entry: Entry | None = None, reason: str = ""):
        self.allowed, self.entry, self.reason = allowed, entry, reason


def target(host: str, port: int) -> str:
    """HOST:PORT as rootsand reports it ([v6]:port for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def decide(host: str, port: int, allow: list[Entry], deny: list[Entry]) -> Decision:
    """Before any lookup: is HOST:PORT allowed? Deny entries win (without a port they deny every port)."""
    name = normalise_host(host)
    if name is None or not 0 < port < 65536:
        return Decision(False, reason=f"{host!r} is not a valid host name")
    address = _address(name)
    for entry in deny:
        if entry.host_matches(name, address) and entry.port_matches(port, any_port=True):
            return Decision(False, entry, f"{target(name, port)} is in the deny list ({entry.text})")
    ports = set()
    for entry in allow:
        if entry.host_matches(name, address):
            if entry.port_matches(port):
                return Decision(True, entry)
            ports |= {entry.port} if entry.port is not None else set(DEFAULT_PORTS)
    if ports:
        return Decision(False, reason=f"{target(name, port)}: port {port} is not allowed for {name} (allowed: "
                                      f"{', '.join(map(str, sorted(ports)))})")
    return Decision(False, reason=f"{target(name, port)} is not in the allow list")


def is_public(address) -> bool:
    """An address on the internet: not loopback, link-local, private, shared (CGNAT), multicast or reserved;
    an IPv4-mapped or NAT64-embedded IPv4 address is judged as that address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address in ipaddress.ip_network("64:ff9b::/96"):
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_global and not address.is_multicast


def vet(name: str, port: int, decision: Decision, addresses: list[str], allow: list[Entry]) -> tuple[list[str], str]:
    """After the lookup of an allowed name: the addresses it may be connected to, in order, and why none
    (empty list). host.rootsand.internal is the host's loopback; an IP literal entry is what it says; a
    name may lead to a public address, or to one an address entry for that port names."""
    if decision.entry is not None and decision.entry.address is not None:
        return [str(decision.entry.address)], ""
    if name == HOST_INTERNAL:
        return ["127.0.0.1", "::1"], ""
    listed = {e.address for e in allow if e.address is not None and e.port_matches(port)}
    kept, refused = [], []
    for text in addresses:
        address = _address(text.split("%")[0])
        if address is None:
            continue
        if is_public(address) or address in listed:
            if text not in kept:
                kept.append(text)
        else:
            refused.append(text)
    if kept:
        return kept, ""
    if refused:
        address = refused[0].split("%")[0]  # an entry takes no zone
        entry = address if port in DEFAULT_PORTS else target(address, port)
        return [], (f"{target(name, port)} resolves to {address}, a private, loopback or reserved address, refused "
                    f"against DNS rebinding: to reach it, allow that address too (--allow-host {entry})")
    return [], f"{target(name, port)}: no address found"
