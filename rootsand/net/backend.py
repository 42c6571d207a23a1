"""What each network mode does at run time, behind one interface: the launcher (L), the setup process (C)
and PID 1 (P1) call these hooks in this order and compare no mode names (runtime/launcher.py, inside.py).

    L  prepare()            before forking C
    L  after_fork(False)    C forked: close what only C uses     C  after_fork(True): close what only L uses
                                                                 C  join(): before unshare, the namespaces
                                                                    joined instead of made (their flags)
                                                                 C  unshared(): right after unshare, a note or None
    L  start(C's pid, log)  C's id maps written, before C goes on
                                                                 C  configure(): True: L has work (stage "network")
    L  serve(...)           at C's "network" stage
                                                                 P1 check(debug): while building the sandbox
    L  finish()             the sandbox has ended, before its exit status is written
    L  stop()               last, also after a failure anywhere above (a hook that never ran left nothing)

The data is the plan's Network section, its addresses from config/netmodes.py. A new mode is one entry there
and one Backend subclass here, named in BACKENDS (tests/unit/test_netmodes.py checks both).
"""

import os
import signal
import sys

from rootsand.config.netmodes import MODES
from rootsand.errors import RootsandError
from rootsand.net import network


class Backend:
    """A mode that needs nothing at run time beyond what every sandbox gets (loopback when it has a network
    namespace of its own). Each hook does nothing here; a mode overrides those it needs."""

    name = ""
    joins_user = False  # the sandbox joins an existing user namespace (join()): no id maps to write

    def __init__(self, net):
        self.net = net  # the plan's Network section

    def prepare(self) -> None:
        pass

    def after_fork(self, in_child: bool) -> None:
        pass

    def join(self) -> int:
        return 0

    def unshared(self) -> str | None:
        return None

    def start(self, child: int, log) -> None:
        pass

    def configure(self) -> bool:
        return False

    def serve(self, status_fd: int | None, verbose: bool, log) -> None:
        pass

    def check(self, debug: bool) -> None:
        pass

    def finish(self) -> None:
        pass

    def stop(self) -> None:
        self.finish()

    def inspect(self, read_interfaces) -> dict:
        """What `rootsand inspect` adds to its network section: the interfaces, where they are the sandbox's own."""
        return {"interfaces": read_interfaces()} if MODES[self.net.mode].own_netns else {}


class NoneBackend(Backend):
    name = "none"


class HostBackend(Backend):
    name = "host"


class SlirpBackend(Backend):
    """slirp4netns, started by the launcher against C once its id maps are written; ports published through
    its API socket, which is removed at once."""

    name = "slirp"

    def __init__(self, net):
        super().__init__(net)
        self.helper: network.Helper | None = None  # its process, once started

    def unshared(self) -> str | None:
        return network.disable_ipv6_dad()  # before slirp4netns creates the interface

    def start(self, child: int, log) -> None:
        from rootsand.config import host
        from rootsand.ops import registry

        binary = host.find_helper("slirp4netns")
        if not binary:
            raise RootsandError("--net slirp: slirp4netns not found", hint="install the 'slirp4netns' package")
        net = self.net
        api_socket = None
        if net.publish:
            directory = registry.runtime_dir()
            registry.remove_stale(directory, "slirp")
            api_socket = os.path.join(directory, f"slirp-{os.getpid()}.sock")
        self.helper = slirp = network.Slirp(binary, child, net, api_socket)
        slirp.publish(net.publish)
        slirp.forget_api_socket()
        log("slirp4netns ready" + (f", published {', '.join(map(str, net.publish))}" if net.publish else ""))

    def check(self, debug: bool) -> None:
        network.check_tap(self.net.interface, self.net.address.partition("/")[0], MODES[self.net.mode].helper)
        if debug:  # not with -v alone: importing pyroute2 takes ~100 ms, and -v times the stages
            for line in network.describe_interfaces():
                print(f"rootsand: network: {line}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        if self.helper:
            self.helper.stop()


class PastaBackend(SlirpBackend):
    """pasta, started by the launcher against C once its id maps are written, as slirp4netns is, with the
    same addresses; its ports published as it starts. It dies with the launcher (PDEATHSIG) or in stop()."""

    name = "pasta"

    def unshared(self) -> str | None:
        return None  # pasta's addresses come without duplicate address detection

    def start(self, child: int, log) -> None:
        self.helper = network.start_pasta(child, self.net, "--net pasta")
        log("pasta ready" + (f", published {', '.join(map(str, self.net.publish))}" if self.net.publish else ""))


class PodBackend(Backend):
    """A member of a pod (net/pod.py): its launcher connects to the pod's keeper, which passes the pod's user
    namespace; the setup process joins it and makes its own network namespace, which the pod's holder wires
    to its bridge once it exists (start); the setup process then gives eth0 the address the keeper chose.
    The connection is held while the member runs: its end takes the member out of the pod."""

    name = "pod"
    joins_user = True

    def __init__(self, net):
        super().__init__(net)
        self.member = None  # pod.Member: the connection to the pod's keeper
        self.userns_fd: int | None = None
        self.address_r: int | None = None  # C reads the address the launcher was told on this pipe
        self.address_w: int | None = None

    def prepare(self) -> None:
        from rootsand.net import pod

        self.member = pod.Member(self.net.pod, self.net.member)
        self.userns_fd = self.member.userns_fd
        self.address_r, self.address_w = os.pipe2(os.O_CLOEXEC)

    def after_fork(self, in_child: bool) -> None:
        if in_child:
            self.member.close()
            self.member = None
            os.close(self.address_w)
            self.address_w = None
        else:
            os.close(self.userns_fd)
            self.userns_fd = None
            os.close(self.address_r)
            self.address_r = None

    def join(self) -> int:
        from rootsand.linux import libc

        libc.setns(self.userns_fd, libc.CLONE_NEWUSER)
        os.close(self.userns_fd)
        return libc.CLONE_NEWUSER

    def start(self, child: int, log) -> None:
        reply = self.member.attach(child)
        os.write(self.address_w, f"{reply['address']} {reply['gateway']}".encode())
        os.close(self.address_w)
        self.address_w = None
        log(f"pod {self.net.pod}: eth0 {reply['address']}")

    def configure(self) -> bool:
        data = os.read(self.address_r, 200).decode().split()
        os.close(self.address_r)
        if len(data) != 2:
            raise RootsandError(f"pod {self.net.pod}: no address came for the sandbox")
        from rootsand.net import pod

        pod.configure(*data)
        return False

    def stop(self) -> None:
        if self.address_w is not None:
            os.close(self.address_w)
            self.address_w = None
        if self.member is not None:
            self.member.close()
            self.member = None


MAX_CAPTURED_PORTS = 250


class ProxyBackend(Backend):
    """The filtering proxy: C makes its endpoint on the sandbox's own 127.0.0.1, and for the capture routes
    every IPv4 address to the sandbox's loopback and listens on the ports the proxy serves there (80, 443,
    each port an allow entry names) and on UDP port 53 (its DNS); it passes all of them out over a socket
    pair, and the launcher serves them from a process on the host's side (proxy.py), which dies with it."""

    name = "proxy"

    def __init__(self, net):
        super().__init__(net)
        self.setup_fd: int | None = None  # C sends the endpoint's socket over this
        self.launcher_fd: int | None = None  # ... and the launcher receives it on this end
        self.pid: int | None = None  # the proxy process

    def prepare(self) -> None:
        import _socket

        self.setup_fd, self.launcher_fd = (
            s.detach() for s in _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM))

    def after_fork(self, in_child: bool) -> None:
        fd = self.launcher_fd if in_child else self.setup_fd
        if fd is not None:
            os.close(fd)
        if in_child:
            self.launcher_fd = None
        else:
            self.setup_fd = None

    def capture_ports(self) -> list[int]:
        """The TCP ports captured on every address: 80, 443 and those the allow entries name (not the
        endpoint's own, which clients of the proxy variables reach on 127.0.0.1)."""
        from rootsand.net import allowlist

        named = {entry.port for entry in allowlist.parse_entries(self.net.allow) if entry.port is not None}
        ports = sorted(({80, 443} | named) - {self.net.proxy_port})
        if len(ports) > MAX_CAPTURED_PORTS:  # their sockets go out in one message, which takes 253 at most
            raise RootsandError(f"the allow entries name {len(ports) - 2} ports: the proxy mode captures at most "
                                f"{MAX_CAPTURED_PORTS - 2} besides 80 and 443")
        return ports

    def configure(self) -> bool:
        # Made here in the sandbox's network namespace and served from the host's side.
        network.loopback_up()
        fds = [network.listen_on_loopback(self.net.proxy_port)]
        try:
            network.add_local_default_route()
            fds.append(network.dns_socket())
            for port in self.capture_ports():
                fds.append(network.listen_on_all(port))
            watch = network.refusals_socket()
            if watch is not None:
                fds.append(watch)  # last: the one the launcher may not get
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        network.send_listeners(self.setup_fd, fds)
        self.setup_fd = None
        return True

    def serve(self, status_fd: int | None, verbose: bool, log) -> None:
        """The endpoint exists inside: serve it from here, in a process that dies with us."""
        ports = self.capture_ports()
        fds = network.receive_listeners(self.launcher_fd, 2 + len(ports), optional=1)
        os.close(self.launcher_fd)
        self.launcher_fd = None
        from rootsand.net import proxy

        net = self.net
        listeners = {"proxy": fds[0], "dns": fds[1], "capture": dict(zip(ports, fds[2:2 + len(ports)])),
                     "refusals": fds[2 + len(ports)] if len(fds) > 2 + len(ports) else None}
        try:
            self.pid = proxy.start(listeners, {"allow": net.allow, "deny": net.deny,
                                               "header_timeout": net.header_timeout, "verbose": verbose}, status_fd)
        finally:
            for fd in fds:
                os.close(fd)
        log(f"proxy process {self.pid} serves 127.0.0.1:{net.proxy_port} inside, and captures TCP ports "
            f"{', '.join(map(str, ports))} of every address and DNS; allowed: {', '.join(net.allow) or 'nothing'}")

    def finish(self) -> None:
        """First: the proxy's last "blocked" lines and its summary come before the exit status. It is asked
        to stop (SIGTERM: it says its summary and exits), and killed if it does not within a second."""
        if self.launcher_fd is not None:
            os.close(self.launcher_fd)
            self.launcher_fd = None
        if self.pid is not None:
            import select

            try:
                pidfd = os.pidfd_open(self.pid)
            except OSError:
                pidfd = None
            try:
                os.kill(self.pid, signal.SIGTERM)
                if pidfd is None or not select.select([pidfd], [], [], 1.0)[0]:
                    os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                if pidfd is not None:
                    os.close(pidfd)
            os.waitpid(self.pid, 0)
            self.pid = None


BACKENDS = {backend.name: backend for backend in (NoneBackend, HostBackend, SlirpBackend, PastaBackend,
                                                  PodBackend, ProxyBackend)}


def backend_for(net) -> Backend:
    """The run-time side of the plan's Network section `net`."""
    return BACKENDS[net.mode](net)
