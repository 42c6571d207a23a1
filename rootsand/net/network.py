"""The network modes' tools (backend.py uses them): loopback, the proxy's endpoint, slirp4netns, pasta.

`none` needs no netlink at all: bringing `lo` up is one ioctl (pyroute2 costs ~150 ms to import). In
slirp mode the launcher runs slirp4netns against the sandbox's setup process, which configures the
interface with the plan's addresses (config/netmodes.py: tap0, 10.0.2.100/24, gateway 10.0.2.2, DNS
10.0.2.3) and signals readiness; ports are published through its API socket, which is removed as soon as
they are. pasta is given the same addresses (and publishes at its start: it has no API in Debian 12).
"""

import fcntl
import os
import select
import signal
import _socket  # the C module: the socket wrapper costs a millisecond on every run
import struct
import time

from rootsand.config.model import PortForward
from rootsand.errors import RootsandError

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCGIFADDR = 0x8915
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCADDRT = 0x890B
IFF_UP = 0x1
RTF_UP, RTF_GATEWAY = 0x1, 0x2

MTU = 65520


def loopback_up() -> None:
    """Bring `lo` up in the current network namespace, so 127.0.0.1 and ::1 work."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        flags = _if_flags(s, "lo")
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    finally:
        s.close()


def _sockaddr_in(address: str) -> bytes:
    return struct.pack("HH4s8x", _socket.AF_INET, 0, _socket.inet_aton(address))


def configure_interface(name: str, address: str, prefix: int, gateway: str) -> None:
    """`name` up with `address`/`prefix` and the default route via `gateway`, in the current network namespace:
    four ioctls, where pyroute2 would cost ~150 ms to import."""
    mask = _socket.inet_ntoa(struct.pack(">I", (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF))
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        fcntl.ioctl(s.fileno(), SIOCSIFADDR, struct.pack("16s16s", name.encode(), _sockaddr_in(address)))
        fcntl.ioctl(s.fileno(), SIOCSIFNETMASK, struct.pack("16s16s", name.encode(), _sockaddr_in(mask)))
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", name.encode(), _if_flags(s, name) | IFF_UP))
        # struct rtentry, natively aligned: pad, dst, gateway, genmask, flags, pad, pad, pad, metric, dev, mtu,
        # window, irtt (the kernel reads the interface from the gateway's subnet)
        route = struct.pack("@L16s16s16sHhLPhPLLH", 0, _sockaddr_in("0.0.0.0"), _sockaddr_in(gateway),
                            _sockaddr_in("0.0.0.0"), RTF_UP | RTF_GATEWAY, 0, 0, 0, 0, 0, 0, 0, 0)
        fcntl.ioctl(s.fileno(), SIOCADDRT, route + bytes(-len(route) % struct.calcsize("L")))  # its tail padding
    except OSError as e:
        raise RootsandError(f"cannot configure {name} with {address}/{prefix} via {gateway}: {e.strerror}") from None
    finally:
        s.close()


def listen_on_loopback(port: int) -> int:
    """A TCP socket listening on 127.0.0.1:port of the current network namespace: its fd."""
    return _listen("127.0.0.1", port, f"127.0.0.1:{port} for the proxy")


def _listen(address: str, port: int, what: str) -> int:
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    try:
        s.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        s.listen(1024)
    except OSError as e:
        s.close()
        raise RootsandError(f"cannot listen on the sandbox's {what}: {e.strerror}") from None
    return s.detach()


def send_listeners(channel_fd: int, fds: list[int]) -> None:
    """Pass `fds` over the Unix socket `channel_fd` (SCM_RIGHTS, one message); all are closed."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, channel_fd)
    try:
        s.sendmsg([b"P"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))])
    finally:
        s.close()
        for fd in fds:
            os.close(fd)


def receive_listeners(channel_fd: int, count: int, optional: int = 0) -> list[int]:
    """The `count` fds send_listeners() passed, and up to `optional` more; RootsandError when they did not
    come."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, channel_fd)
    try:
        s.settimeout(5)
        _, ancillary, _, _ = s.recvmsg(1, _socket.CMSG_SPACE(4 * (count + optional)))
    except OSError as e:
        raise RootsandError(f"the proxy's endpoint did not arrive from the sandbox: {e.strerror or e}") from None
    finally:
        s.detach()
    fds = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(data) // 4}i", data[:len(data) - len(data) % 4])
    if not count <= len(fds) <= count + optional:
        for fd in fds:
            os.close(fd)
        raise RootsandError("the proxy's endpoint did not arrive from the sandbox")
    return fds


# The capture (proxy mode): every IPv4 address is the sandbox's own, so each connection reaches a listener
# of the proxy's or is refused by the kernel at once. One netlink message, no pyroute2.
RTM_NEWROUTE, NLMSG_ERROR = 24, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RT_TABLE_LOCAL, RTPROT_BOOT, RT_SCOPE_HOST, RTN_LOCAL, RTA_OIF = 255, 3, 254, 2, 4


def add_local_default_route() -> None:
    """`ip route add local default dev lo table local` in the current network namespace."""
    message = struct.pack("BBBBBBBBI", _socket.AF_INET, 0, 0, 0, RT_TABLE_LOCAL, RTPROT_BOOT, RT_SCOPE_HOST,
                          RTN_LOCAL, 0) + struct.pack("HHI", 8, RTA_OIF, _socket.if_nametoindex("lo"))
    header = struct.pack("IHHII", 16 + len(message), RTM_NEWROUTE,
                         NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE, 1, 0)
    s = _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, 0)  # NETLINK_ROUTE
    try:
        s.sendall(header + message)
        reply = s.recv(4096)
    except OSError as e:
        raise RootsandError(f"cannot route the sandbox's addresses to the proxy: netlink: {e.strerror}") from None
    finally:
        s.close()
    kind = struct.unpack_from("H", reply, 4)[0] if len(reply) >= 20 else None
    error = struct.unpack_from("i", reply, 16)[0] if kind == NLMSG_ERROR else -1
    if error:
        raise RootsandError("cannot route the sandbox's addresses to the proxy: netlink: "
                            + (os.strerror(-error) if error < 0 and kind == NLMSG_ERROR else "no answer"))


def listen_on_all(port: int) -> int:
    """A TCP socket listening on 0.0.0.0:port of the current network namespace: its fd."""
    return _listen("0.0.0.0", port, f"port {port} for the proxy's capture")


def dns_socket(port: int = 53) -> int:
    """A UDP socket on 0.0.0.0:port that reports each datagram's destination (IP_PKTINFO), so the answer
    leaves from the address the query was sent to: its fd."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        s.setsockopt(_socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.bind(("0.0.0.0", port))
    except OSError as e:
        s.close()
        raise RootsandError(f"cannot listen on the sandbox's UDP port {port} for the proxy's DNS: {e.strerror}") from None
    return s.detach()


IP_PKTINFO = 8

# What the kernel refuses inside (TCP to a port without a listener, UDP other than DNS) never reaches the
# proxy's sockets; a packet socket on lo sees the refusals, so they are reported like the proxy's own.
# Classic BPF over the IP header: a TCP segment with RST, or an ICMP port unreachable; nothing else is
# copied out (and nothing outgoing, PACKET_IGNORE_OUTGOING, which also spares every sent packet a clone).
REFUSALS_FILTER = (
    (0x30, 0, 0, 9),  # A = the protocol
    (0x15, 1, 0, 6),  # TCP?
    (0x15, 3, 7, 1),  # ICMP? else drop
    (0xb1, 0, 0, 0),  # X = the IP header's length
    (0x50, 0, 0, 13),  # A = the TCP flags
    (0x45, 3, 4, 4),  # RST: keep, else drop
    (0xb1, 0, 0, 0),
    (0x48, 0, 0, 0),  # A = the ICMP type and code
    (0x15, 0, 1, 0x0303),  # port unreachable: keep, else drop
    (0x06, 0, 0, 256),  # keep its first 256 bytes
    (0x06, 0, 0, 0),  # drop
)
ETH_P_IP, SOL_PACKET, PACKET_IGNORE_OUTGOING, SO_ATTACH_FILTER = 0x0800, 263, 23, 26


def refusals_socket() -> int | None:
    """A packet socket on lo that receives the kernel's refusals (REFUSALS_FILTER): its fd, or None where
    one cannot be made (the refusals are then not reported; nothing else changes)."""
    import ctypes

    program = b"".join(struct.pack("HBBI", *op) for op in REFUSALS_FILTER)
    buffer = ctypes.create_string_buffer(program)
    try:
        s = _socket.socket(_socket.AF_PACKET, _socket.SOCK_DGRAM, _socket.htons(ETH_P_IP))
    except OSError:
        return None
    try:
        s.setsockopt(_socket.SOL_SOCKET, SO_ATTACH_FILTER,
                     struct.pack("HL", len(REFUSALS_FILTER), ctypes.addressof(buffer)))
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        s.bind(("lo", ETH_P_IP))
    except OSError:
        s.close()
        return None
    return s.detach()


def _if_flags(s, name: str) -> int:
    req = struct.pack("16sH14x", name.encode(), 0)
    return struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req))[1]


def check_tap(interface: str, expected: str, helper: str = "slirp4netns") -> None:
    """After the `helper` (slirp4netns, pasta) has configured `interface`: make sure it is up with the
    `expected` address (two ioctls, no netlink)."""
    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM)
    try:
        up = _if_flags(s, interface) & IFF_UP
        raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("16s16x", interface.encode()))
    except OSError as e:
        raise RootsandError(f"{helper} did not configure {interface}: {e.strerror}") from None
    finally:
        s.close()
    address = _socket.inet_ntoa(raw[20:24])
    if not up or address != expected:
        raise RootsandError(f"{helper} left {interface} {'up' if up else 'down'} with address {address}")


def describe_interfaces() -> list[str]:
    """Addresses and routes as pyroute2 reads them over netlink: for --verbose and later `inspect`."""
    from pyroute2 import IPRoute

    lines = []
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for addr in ipr.get_addr():
            lines.append(f"{names.get(addr['index'])}: {addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
        for route in ipr.get_routes(family=_socket.AF_INET):
            gateway = route.get_attr("RTA_GATEWAY")
            if gateway:
                lines.append(f"default via {gateway} dev {names.get(route.get_attr('RTA_OIF'))}")
    return lines


def disable_ipv6_dad() -> str | None:
    """In a fresh network namespace: no duplicate address detection, or IPv6 is unusable for 1-2 s.
    Why that could not be done, or None."""
    for conf in ("all", "default"):
        path = f"/proc/sys/net/ipv6/conf/{conf}/accept_dad"
        try:
            with open(path, "w") as f:
                f.write("0")
        except FileNotFoundError:
            return None  # IPv6 disabled on this host: nothing to wait for
        except OSError as e:
            return (f"the sandbox's IPv6 address waits 1-2 s for duplicate address detection: {path}: "
                    f"{e.strerror} (a read-only /proc/sys)")
    return None


class Helper:
    """A helper process (slirp4netns, pasta) serving the sandbox's network namespace from the launcher's
    side: its readiness awaited, its failure explained, and stopped last."""

    name = ""

    def _start(self, argv: list[str], ready_fd: int, pass_fds: tuple, **options) -> None:
        """Run the helper with `pass_fds` (closed here, its ends) and wait until it says it is ready on
        `ready_fd` (closed too); stopped again when it does not."""
        import subprocess

        try:
            self.process = subprocess.Popen(argv, pass_fds=pass_fds, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **options)
        except OSError as e:
            os.close(ready_fd)
            raise RootsandError(f"cannot start {self.name}: {e.strerror}") from None
        finally:
            for fd in pass_fds:
                os.close(fd)
        try:
            self._wait_ready(ready_fd)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(ready_fd)

    def _wait_ready(self, ready_fd: int, timeout: float = 10.0) -> None:
        """Wait for readiness on `ready_fd` (a byte), and notice at once if the helper exits instead."""
        errors = self.process.stderr.fileno()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RootsandError(f"{self.name} did not get ready within {timeout:g}s")
            ready = select.select([ready_fd, errors], [], [], left)[0]
            if ready_fd in ready and os.read(ready_fd, 1):
                return
            if errors in ready or ready_fd in ready:  # output or end of file: it is failing or has exited
                if self.process.poll() is not None or ready_fd in ready:
                    self.process.wait(timeout=2)
                    raise self._failure(self._errors())

    def _errors(self) -> str:
        """What the helper said on its way out, on one line (not its complaint that syslog is missing)."""
        lines = self.process.stderr.read().decode(errors="replace").splitlines()
        return " ".join(" ".join(line for line in lines if "to syslog" not in line).split()[-30:])

    def _failure(self, detail: str) -> RootsandError:
        return RootsandError(f"{self.name} failed (exit status {self.process.returncode}): {detail}",
                             hint=_tun_hint())

    def _end(self, grace: float) -> None:
        """Wait up to `grace` seconds for the helper to exit (it was told to), then kill it; reap it."""
        # Popen.wait(timeout) polls with sleeps growing to 50 ms: a pidfd says at once when it has exited.
        # (Its exit itself takes ~20 ms here, SIGKILL or not: the kernel's tear-down of its tap device.)
        try:
            pidfd = os.pidfd_open(self.process.pid)
        except ProcessLookupError:  # reaped already
            pidfd = None
        except OSError:  # no fd to wait on (EMFILE): no waiting without a limit either
            pidfd = None
            self.process.send_signal(signal.SIGKILL)
        if pidfd is not None:
            try:
                if not select.select([pidfd], [], [], grace)[0]:
                    self.process.send_signal(signal.SIGKILL)
            finally:
                os.close(pidfd)
        self.process.wait()
        self.process.stderr.close()


class Slirp(Helper):
    """A slirp4netns process serving the sandbox's network namespace, from the launcher's side.

    It is tied to the launcher by --exit-fd: when the launcher's end closes (also when the launcher is
    killed), slirp4netns exits by itself.
    """

    name = "slirp4netns"

    def __init__(self, binary: str, pid: int, net, api_socket: str | None):
        """Serve `pid`'s network namespace as the plan's Network section `net` says."""
        self.api_socket = api_socket
        self.guest_address = net.address.partition("/")[0]
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        exit_r, self._exit_w = os.pipe2(os.O_CLOEXEC)
        # --enable-sandbox: slirp4netns pivots into an empty root of its own mount namespace, which it cannot
        # make inside another user namespace (a sandbox, a container); its seccomp filter it always gets.
        argv = [binary, "--configure", f"--mtu={MTU}", "--enable-ipv6",
                *(["--enable-sandbox"] if net.slirp_sandbox else []),
                "--enable-seccomp", f"--ready-fd={ready_w}", f"--exit-fd={exit_r}"]
        if not net.allow_host_loopback:
            argv.append("--disable-host-loopback")
        if api_socket:
            argv.append(f"--api-socket={api_socket}")
        argv += [str(pid), net.interface]
        self._start(argv, ready_r, (ready_w, exit_r))

    def publish(self, forwards: list[PortForward]) -> None:
        for fwd in forwards:
            request = {"execute": "add_hostfwd",
                       "arguments": {"proto": fwd.proto, "host_addr": fwd.host_addr, "host_port": fwd.host_port,
                                     "guest_addr": self.guest_address, "guest_port": fwd.guest_port}}
            reply = self._api(request)
            if "error" in reply:
                desc = reply["error"].get("desc", reply["error"]) if isinstance(reply["error"], dict) else reply
                raise RootsandError(f"cannot publish {fwd}: {desc}",
                                    hint=f"is port {fwd.host_port}/{fwd.proto} on {fwd.host_addr} already in use?")

    def _api(self, request: dict) -> dict:
        import json

        """One request per connection, as slirp4netns's API wants: send, shut down writing, read the reply."""
        import socket

        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            try:
                s.connect(self.api_socket)
                s.sendall(json.dumps(request).encode())
                s.shutdown(socket.SHUT_WR)
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                return json.loads(data or b"{}")
            except (OSError, ValueError) as e:
                raise RootsandError(f"slirp4netns API at {self.api_socket}: {e}") from None

    def forget_api_socket(self) -> None:
        """The API is only needed during setup: remove its socket so nothing is left if we are killed."""
        if self.api_socket:
            try:
                os.unlink(self.api_socket)
            except FileNotFoundError:
                pass
            self.api_socket = None

    def stop(self) -> None:
        if self._exit_w is not None:
            os.close(self._exit_w)  # slirp4netns exits when this end closes (if we die, too)
            self._exit_w = None
        self._end(grace=2)
        self.forget_api_socket()


def start_pasta(pid: int, net, asked: str) -> "Pasta":
    """pasta serving `pid`'s network namespace as the Network section `net` says (its mode's IPv6 addresses);
    `asked`: what asked for it, for the error when it is not installed."""
    from rootsand.config import host
    from rootsand.config.netmodes import MODES

    binary = host.find_helper("pasta")
    mode = MODES["pasta"]
    if not binary:
        raise RootsandError(f"{asked}: pasta not found", hint=f"install the '{mode.package}' package")
    return Pasta(binary, pid, net, mode.address6, mode.gateway6)


class Pasta(Helper):
    """A pasta process (passt's namespace mode) serving the sandbox's network namespace, from the launcher's
    side, with slirp's addresses and promises: the plan's address, gateway and DNS forwarder (and fd00::100
    behind fd00::2), no port forwarded either way but the published ones (pasta's default forwards every
    port bound on either side), and the gateway mapped to the host's loopback only with
    --allow-host-loopback.

    pasta has no --exit-fd, and Debian 12's stays after the namespace's last process has gone (it holds the
    namespace itself): it runs in the foreground, killed with the launcher (PDEATHSIG) and by stop().
    """

    name = "pasta"

    def __init__(self, binary: str, pid: int, net, address6: str, gateway6: str):
        """Serve `pid`'s network namespace as the plan's Network section `net` says."""
        self.forwards = list(net.publish)
        address, _, prefix = net.address.partition("/")
        # Readiness: pasta writes its PID file once the namespace is configured. Not a pipe's /dev/fd/N: pasta
        # since 2024 closes every inherited descriptor as it starts (Debian 13's: "Couldn't open PID file
        # /dev/fd/8"); a FIFO of ours, opened for reading before pasta starts, works with both.
        import tempfile  # here: not on every run's import path

        fifo_dir = tempfile.mkdtemp(prefix="rootsand-pasta-")
        fifo = os.path.join(fifo_dir, "ready")
        os.mkfifo(fifo, 0o600)
        ready_r = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        argv = [binary, "--config-net", "--foreground", "--quiet", "--ns-ifname", net.interface,
                "--mtu", str(MTU), "--address", address, "--netmask", prefix, "--gateway", net.gateway,
                "--address", address6, "--gateway", gateway6, "--dns-forward", net.dns,
                "--pid", fifo]
        for proto, option in (("tcp", "-t"), ("udp", "-u")):  # one option a port: its address is its own
            ports = [f"{fwd.host_addr}/{fwd.host_port}:{fwd.guest_port}" for fwd in self.forwards if fwd.proto == proto]
            for spec in ports or ["none"]:
                argv += [option, spec]
        argv += ["-T", "none", "-U", "none"]  # nothing of the host's loopback appears on the sandbox's
        if not net.allow_host_loopback:
            argv.append("--no-map-gw")
        argv.append(str(pid))
        launcher = os.getpid()

        def tie_to_launcher():  # in the forked child, before pasta runs: it dies with the launcher
            from rootsand.linux import libc

            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != launcher:
                os._exit(1)

        try:
            self._start(argv, ready_r, (), preexec_fn=tie_to_launcher)
        finally:
            os.unlink(fifo)
            os.rmdir(fifo_dir)

    def _failure(self, detail: str) -> RootsandError:
        for fwd in self.forwards:  # "Failed to bind any port for '-t 127.0.0.1/8080:80', exiting"
            if f"{fwd.host_addr}/{fwd.host_port}:" in detail:
                return RootsandError(f"cannot publish {fwd}: {detail}",
                                     hint=f"is port {fwd.host_port}/{fwd.proto} on {fwd.host_addr} already in use?")
        return super()._failure(detail)

    def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)  # nothing of its own to save
        self._end(grace=2)


def _tun_hint() -> str | None:
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "/dev/net/tun is not usable by you: as root, chmod 0666 /dev/net/tun (or load the tun module)"
    return None
