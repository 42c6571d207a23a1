"""Pods: sandboxes on one private network, reaching each other by name (`rootsand pod create`, `run --pod`).

    rootsand pod create NAME (the caller)
      fork -> K, the keeper: setsid; the pod's host side, as a launcher is a sandbox's
      K: fork -> H, the holder: unshare(USER|NET), PDEATHSIG to K; K writes H's id maps (the sandboxes' map)
      H: root of the pod's user namespace: lo up, bridge rsbr0 with 10.88.0.1/24, ip_forward on
      K: the uplink (pasta or slirp4netns, as --net starts them) against H; listens on RUNTIME/pods/NAME.sock;
         RUNTIME/pods/NAME.json records the pod; "R" to the caller, which prints the name and exits
    rootsand run --pod NAME (its launcher, net/backend.py's PodBackend)
      connects to NAME.sock; K passes the pod's user namespace (SCM_RIGHTS), which the setup process joins
      instead of making one (no id maps to write: the pod's), making the other namespaces its own;
      once it has unshared, K has H put a veth pair's end into its network namespace as eth0 and says its
      address (10.88.0.N/24, default route via .1), which the setup process gives eth0.
      The connection stays open while the member runs: its end (an exit, a SIGKILL) takes the member out.

Members share the pod's user namespace, as podman's pods do: a veth end can only be put into a network
namespace whose user namespace the holder has power over, and the map of a user namespace nested in the pod's
could only be written from inside the pod (newuidmap on the host cannot). Each member still has mount, PID,
IPC, UTS and network namespaces of its own: members see each other only over the pod's bridge.

Names: RUNTIME/pods/NAME.hosts is every member's /etc/hosts (bound read-only), rewritten in place (the bind
holds the inode) as members come and go. Ends: K dies -> H (PDEATHSIG) and the uplink (PDEATHSIG, exit
pipe) die with it; `pod rm` tells K (SIGTERM), which removes its files; a killed K's files are removed by
the next `pod` command (sweep()). pyroute2 is imported in H only (~150 ms): no other run pays for it.
"""

import json
import os
import select
import signal
import _socket
import struct
import time

from rootsand.errors import RootsandError

BRIDGE = "rsbr0"
SUBNET = "10.88.0"  # /24: the holder .1, members from .2
PREFIX = 24
GATEWAY = f"{SUBNET}.1"
UPLINKS = ("none", "pasta")  # a pod's ways out (--net): nothing, or pasta attached to the holder
HOSTS_HEAD = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


# ---------------------------------------------------------------------------------------------- records

def pods_dir() -> str:
    from rootsand.ops import registry

    path = os.path.join(registry.runtime_dir(), "pods")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if registry._not_private(path, os.getuid()):
            raise RootsandError(f"{path} is not a private directory of yours", hint="remove it") from None
    return path


def pod_path(name: str, suffix: str) -> str:
    from rootsand.config.spec import validate_name

    return os.path.join(pods_dir(), validate_name(name) + suffix)


def records() -> list[dict]:
    """Every live pod of this user, oldest first (a killed keeper's files are swept first)."""
    from rootsand.ops import registry

    sweep()
    found = []
    for entry in sorted(os.listdir(pods_dir())):
        if entry.endswith(".json"):
            record = registry.load(os.path.join(pods_dir(), entry))
            if record is not None and registry.is_live(record):
                found.append(record)
    return sorted(found, key=lambda r: r.get("created", 0))


def find(name: str) -> dict:
    from rootsand.ops import registry

    record = registry.read_entry(pod_path(name, ".json"))
    if record is None:
        raise RootsandError(f"no pod named {name}", hint="'rootsand pod create NAME' makes one; 'rootsand pod ls' "
                                                       "lists them")
    return record


def sweep() -> list[str]:
    """Remove the files of pods whose keeper is gone (killed before it could remove them): one line each."""
    from rootsand.ops import registry

    directory = pods_dir()
    done = []
    for entry in sorted(os.listdir(directory)):
        if entry.endswith(".json") and registry.read_entry(os.path.join(directory, entry)) is None:
            _remove_files(os.path.join(directory, entry[:-5]))
            done.append(f"removed the files of pod {entry[:-5]} (its keeper was killed)")
    return done


def _remove_files(base: str) -> None:
    for suffix in (".sock", ".hosts", ".log", ".json"):  # the record last: it says the rest is there
        try:
            os.unlink(base + suffix)
        except FileNotFoundError:
            pass


def hosts_text(members: dict) -> str:
    """The members' /etc/hosts: `members` maps names to addresses."""
    return HOSTS_HEAD + "".join(f"{address}\t{name}\n" for name, address in sorted(members.items(),
                                                                                   key=lambda m: m[1]))


# ---------------------------------------------------------------------------------------------- create

def create(name: str, net_mode: str, publish: list[str] = ()) -> None:
    """Start the pod `name`'s keeper in the background; return once the pod is up (its network made).
    `publish`: --publish's, host ports forwarded through the uplink to the member listening on the port."""
    from rootsand.linux import procfs

    if net_mode not in UPLINKS:
        hint = ("slirp4netns serves only its own guest address: the members behind the pod's bridge would need "
                "NAT rules in the pod, which pasta does without") if net_mode == "slirp" else None
        raise RootsandError(f"invalid pod --net {net_mode!r}: expected {' or '.join(UPLINKS)}", hint=hint)
    from rootsand.config.model import parse_publish

    forwards = [parse_publish(text) for text in publish]
    if forwards and net_mode == "none":
        raise RootsandError("pod --publish needs --net pasta (the pod's way in)")
    if any(fwd.proto != "tcp" for fwd in forwards):
        raise RootsandError("pod --publish: TCP ports only (the holder relays each connection to a member)")
    sweep()
    base = pod_path(name, "")
    me = {"name": name, "status": "starting", "created": time.time(),
          "launcher": {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}}
    try:
        fd = os.open(base + ".json", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise RootsandError(f"a pod named {name} exists", hint=f"'rootsand pod rm {name}' removes it") from None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(me))
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    keeper = os.fork()
    if keeper == 0:
        os.close(ready_r)
        code = 1
        try:
            os.setsid()
            null = os.open("/dev/null", os.O_RDWR)
            log = os.open(base + ".log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.dup2(null, 0)  # not the caller's terminal, which is gone soon: the pod's log
            os.dup2(log, 1)
            os.dup2(log, 2)
            code = Keeper(name, base, net_mode, forwards).run(ready_w)
        except BaseException as e:  # noqa: BLE001 - a forked child never returns into the caller's code
            _tell(ready_w, {"error": e.message if isinstance(e, RootsandError) else f"{type(e).__name__}: {e}",
                            "hint": getattr(e, "hint", None)})
        finally:
            os._exit(code)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as f:
        line = f.readline()
    report = json.loads(line) if line.strip() else {"error": "the pod's keeper exited before the pod was up"}
    if "error" in report:
        os.waitpid(keeper, 0)
        _remove_files(base)
        raise RootsandError(f"pod {name}: {report['error']}", hint=report.get("hint"))


def _tell(fd: int, message: dict) -> None:
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass


class Keeper:
    """K: the pod's host side. Holds the holder H and the uplink; serves members; removes its files at the end."""

    def __init__(self, name: str, base: str, net_mode: str, forwards: list = ()):
        self.name, self.base, self.net_mode, self.forwards = name, base, net_mode, list(forwards)
        self.holder: int | None = None
        self.control: int | None = None  # a socket to H: one request, one reply
        self.userns_fd: int | None = None
        self.uplink = None
        self.members: dict[int, dict] = {}  # connection fd -> {"name", "address"}
        self.created = time.time()

    def run(self, ready_w: int) -> int:
        signal.signal(signal.SIGTERM, _exit_on_signal)  # pod rm: the finally below cleans up
        listener = None
        try:
            self._start_holder()
            self._start_uplink()
            import socket  # (the keeper only: the full module, for accept())

            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self.base + ".sock")
            listener.listen(64)
            self._write_hosts()
            self._publish()
            _tell(ready_w, {"ok": True})
            os.close(ready_w)
            self._serve(listener)
        except SystemExit:
            pass
        except RootsandError as e:
            _tell(ready_w, {"error": e.message, "hint": e.hint})
            return 1
        except Exception:  # noqa: BLE001 - said in the pod's log, which `pod rm` removes
            import traceback

            traceback.print_exc()
            return 1
        finally:
            if listener is not None:
                listener.close()
            if self.uplink is not None:
                self.uplink.stop()
            if self.holder is not None:
                os.kill(self.holder, signal.SIGKILL)
                os.waitpid(self.holder, 0)
            _remove_files(self.base)
        return 0

    def _start_holder(self) -> None:
        from rootsand.config import host, idmap
        from rootsand.runtime import maps

        facts = host.facts("none")
        ids = idmap.plan(facts.uid, facts.gid, facts.subuids, facts.subgids, facts.newuidmap, facts.newgidmap,
                         nested=facts.nested, inside_ids=tuple(facts.nested_ids) if facts.nested_ids else None)
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
        keeper = os.getpid()
        pid = os.fork()
        if pid == 0:
            ours.close()
            code = 1
            try:
                code = _holder(keeper, theirs)
            finally:
                os._exit(code)
        theirs.close()
        self.holder, self.control = pid, ours.detach()
        if self._ask({}).get("unshared"):
            maps.write_maps(ids, pid)
        reply = self._ask({"ports": sorted({fwd.guest_port for fwd in self.forwards})})
        if "error" in reply:
            raise RootsandError(f"the holder's network: {reply['error']}")
        self.userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)

    def _ask(self, request: dict) -> dict:
        s = _socket.socket(fileno=os.dup(self.control))
        try:
            if request:
                s.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(4096)
                if not chunk:
                    return {"error": "the holder exited"}
                data += chunk
            return json.loads(data)
        finally:
            s.close()

    def _start_uplink(self) -> None:
        """pasta or slirp4netns against H, as --net starts them for a sandbox, H's addresses theirs."""
        if self.net_mode == "none":
            return
        from rootsand.config.netmodes import MODES
        from rootsand.config.plan import Network
        from rootsand.net import network

        mode = MODES[self.net_mode]
        net = Network(mode=mode.name, address=f"{mode.address}/{mode.prefix}", gateway=mode.gateway,
                      dns=mode.dns, interface=mode.interface, publish=self.forwards)
        self.uplink = network.start_pasta(self.holder, net, "pod --net pasta")

    def _publish(self) -> None:
        from rootsand.linux import procfs
        from rootsand.ops import registry

        me = {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}
        registry.publish(self.base + ".json", {
            "name": self.name, "status": "running", "created": self.created, "launcher": me,
            "holder": {"pid": self.holder, "start": procfs.start_time(self.holder)}, "net": self.net_mode,
            "subnet": f"{SUBNET}.0/{PREFIX}", "gateway": GATEWAY, "publish": [str(fwd) for fwd in self.forwards],
            "members": {m["name"]: m["address"] for m in self.members.values() if m.get("address")}})

    def _write_hosts(self) -> None:
        """In place: each member's /etc/hosts is a bind of this file's inode."""
        text = hosts_text({m["name"]: m["address"] for m in self.members.values() if m.get("address")})
        fd = os.open(self.base + ".hosts", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
            os.ftruncate(fd, len(text.encode()))
        finally:
            os.close(fd)

    def _serve(self, listener) -> None:
        holder = os.pidfd_open(self.holder)
        connections = {}
        while True:
            ready = select.select([listener.fileno(), holder, *connections], [], [])[0]
            if holder in ready:
                return  # the holder died: the pod's network is gone
            if listener.fileno() in ready:
                conn, _ = listener.accept()
                if _peer_uid(conn) != os.getuid():
                    conn.close()
                    continue
                connections[conn.fileno()] = conn
                self.members[conn.fileno()] = {}
            for fd in [fd for fd in ready if fd in connections]:
                if not self._handle(connections[fd]):
                    connections.pop(fd).close()
                    address = self.members.pop(fd, {}).get("address")
                    if address:
                        self._ask({"detach": address})
                        self._write_hosts()
                        self._publish()

    def _handle(self, conn) -> bool:
        """One request of a member's launcher; False at its end."""
        try:
            data = conn.recv(4096)
        except OSError:
            return False
        if not data:
            return False
        try:
            request = json.loads(data)
        except ValueError:
            return False
        member = self.members[conn.fileno()]
        if "join" in request:
            from rootsand.config.model import validate_name

            try:  # a line of every member's /etc/hosts: no other text may get in
                member["name"] = validate_name(str(request["join"]))
            except RootsandError:
                return False
            if any(m.get("name") == member["name"] and m is not member for m in self.members.values()):
                conn.sendall(b'{"error": "a member of that name is in the pod"}\n')
                return False
            conn.sendmsg([b'{"ok": true}\n'], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                                 struct.pack("i", self.userns_fd))])
        elif "attach" in request and member.get("name"):
            taken = {m.get("address") for m in self.members.values()}
            address = next((f"{SUBNET}.{n}" for n in range(2, 255) if f"{SUBNET}.{n}" not in taken), None)
            if address is None:
                conn.sendall(b'{"error": "the pod is full (253 members)"}\n')
                return False
            reply = self._ask({"attach": int(request["attach"]), "peer": _peer_pid(conn), "address": address})
            if "error" in reply:
                conn.sendall((json.dumps(reply) + "\n").encode())
                return False
            member["address"] = address
            self._write_hosts()
            self._publish()
            conn.sendall((json.dumps({"address": f"{address}/{PREFIX}", "gateway": GATEWAY}) + "\n").encode())
        else:
            return False
        return True


def _exit_on_signal(signum, _frame):
    raise SystemExit(0)


def _peer_uid(conn) -> int:
    return struct.unpack("3i", conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))[1]


def _peer_pid(conn) -> int:
    return struct.unpack("3i", conn.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))[0]


# ---------------------------------------------------------------------------------------------- holder

def _holder(keeper: int, control) -> int:
    """H: the pod's user and network namespaces. Answers K's requests on `control`, one JSON line each."""
    from rootsand.linux import libc

    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != keeper:
        return 1
    reader = os.fdopen(os.dup(control.fileno()), "rb", buffering=0)

    def reply(message: dict) -> None:
        control.sendall((json.dumps(message) + "\n").encode())

    try:
        libc.unshare(libc.CLONE_NEWUSER | libc.CLONE_NEWNET)
    except OSError as e:
        reply({"error": f"unshare: {os.strerror(e.errno)}"})
        return 1
    reply({"unshared": True})
    line = reader.readline()
    if not line:
        return 1
    members = set()  # the members' addresses, for the published ports' relays
    try:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        libc.prctl(libc.PR_SET_DUMPABLE, 1)  # the change of ids cleared it: K opens our namespaces
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)  # (cleared with the ids as well)
        from pyroute2 import IPRoute

        from rootsand.net import network

        network.loopback_up()
        ipr = IPRoute()
        ipr.link("add", ifname=BRIDGE, kind="bridge")
        bridge = ipr.link_lookup(ifname=BRIDGE)[0]
        ipr.addr("add", index=bridge, address=GATEWAY, prefixlen=PREFIX)
        ipr.link("set", index=bridge, state="up")
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:  # members reach the uplink through us
            f.write("1")
        for port in json.loads(line)["ports"]:
            _relay_port(port, members)
    except Exception as e:  # noqa: BLE001 - K says it: pyroute2's errors are its own classes
        reply({"error": f"{getattr(e, 'filename', None) or ''} {getattr(e, 'strerror', None) or e}".strip()})
        return 1
    reply({"ok": True})
    while line := reader.readline():
        request = json.loads(line)
        if "detach" in request:
            members.discard(request["detach"])
            reply({"ok": True})
            continue
        try:
            _attach(ipr, bridge, request["attach"], request.get("peer"))
            members.add(request["address"])
            reply({"ok": True})
        except Exception as e:  # noqa: BLE001 - the pod goes on; the member is told
            reply({"error": f"cannot attach the member to the pod's bridge: {e}"})
    return 0


RELAYED = 256  # connections a published port relays at once


def _relay_port(port: int, members: set) -> None:
    """A published port: pasta forwards the host's port to ours, here in the holder's network namespace;
    each connection is relayed to the first member (by address) that accepts on the same port."""
    import socket
    import threading

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(64)

    # At most RELAYED connections at once (each holds two fds and a thread; select() takes fds below 1024):
    # more are closed as they come. A failed accept() (out of fds, a reset before it) is passed over: any
    # local user can reach a published port, and none may end it for the pod (attack 9, p01).
    slots = threading.BoundedSemaphore(RELAYED)

    def relay(conn) -> None:
        try:
            _relay(conn, port, sorted(members, key=socket.inet_aton))
        finally:
            slots.release()

    def accept():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                time.sleep(0.05)  # (EMFILE: an fd is freed when a relay ends)
                continue
            if not slots.acquire(blocking=False):
                conn.close()
                continue
            try:
                threading.Thread(target=relay, args=(conn,), daemon=True).start()
            except RuntimeError:  # no thread to be had
                slots.release()
                conn.close()

    threading.Thread(target=accept, daemon=True).start()


def _relay(conn, port: int, members: list) -> None:
    import socket

    upstream = None
    for address in members:
        try:
            upstream = socket.create_connection((address, port), timeout=5)
            break
        except OSError:
            continue
    if upstream is None:  # no member listens: the client sees the connection closed
        conn.close()
        return
    upstream.settimeout(None)
    open_ends = {conn: upstream, upstream: conn}
    try:
        while open_ends:
            for sock in select.select(list(open_ends), [], [])[0]:
                data = sock.recv(65536)
                if data:
                    open_ends[sock].sendall(data)
                else:  # one side is done sending: tell the other, and read on from it alone
                    open_ends[sock].shutdown(socket.SHUT_WR)
                    del open_ends[sock]
    except OSError:
        pass
    finally:
        conn.close()
        upstream.close()


def _attach(ipr, bridge: int, pid: int, launcher: int | None) -> None:
    """A veth pair: eth0 in `pid`'s network namespace, its peer on the bridge. `pid` must be a child of the
    asking launcher: no one else's process is wired into the pod."""
    from rootsand.linux import procfs

    if launcher is None or procfs.parent_of(pid) != launcher:
        raise RootsandError(f"process {pid} is not the asking launcher's")
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        name = f"rsv{pid}"[:15]
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
    finally:
        os.close(fd)
    index = ipr.link_lookup(ifname=name)[0]
    ipr.link("set", index=index, master=bridge, state="up")


# ---------------------------------------------------------------------------------------------- member side

class Member:
    """A member's launcher's connection to its pod's keeper."""

    def __init__(self, pod: str, name: str):
        record = find(pod)
        self.pod = pod
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            self.sock.connect(pod_path(pod, ".sock"))
        except OSError as e:
            self.sock.close()
            raise RootsandError(f"cannot reach pod {pod}'s keeper (pid {record['launcher']['pid']}): "
                                f"{e.strerror}") from None
        self.sock.sendall(json.dumps({"join": name}).encode())
        data, ancillary, _, _ = self.sock.recvmsg(4096, _socket.CMSG_SPACE(4))
        reply = json.loads(data or b"{}")
        if "error" in reply:
            self.close()
            raise RootsandError(f"pod {pod}: {reply['error']}")
        self.userns_fd = next((struct.unpack("i", payload[:4])[0] for level, kind, payload in ancillary
                               if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS), None)
        if self.userns_fd is None:
            self.close()
            raise RootsandError(f"pod {pod}: its user namespace did not arrive")

    def attach(self, pid: int) -> dict:
        """Wire the setup process `pid`'s network namespace into the pod: {"address", "gateway"}."""
        self.sock.sendall(json.dumps({"attach": pid}).encode())
        self.sock.settimeout(10)
        data = self.sock.recv(4096)
        reply = json.loads(data or b'{"error": "its keeper exited"}')
        if "error" in reply:
            raise RootsandError(f"pod {self.pod}: {reply['error']}")
        return reply

    def close(self) -> None:
        self.sock.close()


def configure(address: str, gateway: str) -> None:
    """In the member's network namespace: eth0 up with `address`, the default route via `gateway`."""
    from rootsand.net import network

    ip, _, prefix = address.partition("/")
    network.configure_interface("eth0", ip, int(prefix), gateway)


# ---------------------------------------------------------------------------------------------- ls, inspect, rm

def members(name: str) -> list[str]:
    """The running sandboxes that joined the pod `name`, by name."""
    from rootsand.ops import registry

    return sorted(entry["name"] for entry in registry.entries() if entry.get("pod") == name)


def rows() -> list[dict]:
    now = time.time()
    return [{"name": r["name"], "net": r.get("net"), "keeper": r["launcher"]["pid"], "subnet": r.get("subnet"),
             "members": members(r["name"]), "age_seconds": round(now - r.get("created", now), 3)}
            for r in records()]


def inspect(name: str) -> dict:
    record = find(name)
    return {"name": record["name"], "net": record.get("net"), "subnet": record.get("subnet"),
            "publish": record.get("publish", []),
            "gateway": record.get("gateway"), "keeper": record["launcher"], "holder": record.get("holder"),
            "members": dict(sorted(record.get("members", {}).items())), "hosts": pod_path(name, ".hosts")}


def remove(name: str, force: bool, grace: float = 10.0) -> None:
    """Stop the pod's keeper (its holder and uplink die with it; it removes its files); with `force` its
    members are stopped first, else members are an error."""
    from rootsand.ops import registry
    from rootsand.ops.ps import stop

    record = find(name)
    running = members(name)
    if running and not force:
        raise RootsandError(f"pod {name} has members running: {', '.join(running)}",
                            hint=f"'rootsand pod rm -f {name}' stops them")
    for member in running:
        try:
            stop(member, grace)
        except RootsandError:
            pass  # ended meanwhile
    keeper = registry.pidfd_of(record["launcher"])
    if keeper is not None:
        try:
            signal.pidfd_send_signal(keeper, signal.SIGTERM)
            if not select.select([keeper], [], [], 10)[0]:
                signal.pidfd_send_signal(keeper, signal.SIGKILL)
                select.select([keeper], [], [], 10)
        except ProcessLookupError:
            pass
        finally:
            os.close(keeper)
    _remove_files(pod_path(name, ""))
