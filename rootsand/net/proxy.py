"""The proxy mode's filtering proxy: HTTP CONNECT, plain HTTP forwarding and SOCKS5 on one endpoint, and the
capture of every other TCP connection and of DNS.

The endpoint is a TCP socket on 127.0.0.1 inside the sandbox's network namespace: the setup process made
it there and passed it out over a Unix socket (inside.py), so the sandbox connects to its own loopback
while this process, on the host's side, accepts and connects out. No port is opened on the host, and no
relay runs inside.

This process is forked by the launcher once the endpoint exists (start()). It dies with the launcher
(PR_SET_PDEATHSIG), and the launcher stops it when the sandbox ends (SIGTERM: it says its summary). It is
the only place asyncio and h11 are imported: every other mode pays nothing for them.

The capture (capture.py): the sandbox's DNS queries reach this process's UDP socket and are answered
with fake addresses that stand for the names; every IPv4 address is routed to the sandbox's loopback,
where this process's listeners on ports 80, 443 and those the allow entries name take each connection,
whatever its address. The address it reached gives back the name (or is a literal address), the port is
the listener's; TLS connections are judged by the ClientHello's server name too, port 80 by the Host.

Every request names a host; allowlist.decide() judges it before any lookup, the lookup runs here on the
host, allowlist.vet() judges the addresses. A refusal is a 403 (SOCKS: "not allowed by ruleset"; a
captured TLS or other connection: a reset), one `rootsand: blocked: WHY` line on stderr per target and
reason and a {"blocked": HOST:PORT, "reason": WHY} line in --json-status; at the end, when asked to stop
(SIGTERM), one line per refused target with how often it was refused, on both.
"""

import functools
import json
import os
import signal
import sys

HEADER_LIMIT = 64 * 1024  # request heads above this are refused (431)
CONNECT_TIMEOUT = 15.0
# The proxy runs outside the sandbox's limits: what a sandbox can make it hold is capped here (class Socket).
CHUNK = 64 * 1024  # one read; a relay holds at most one unsent read per direction
SMALL = 4 * 1024  # one read before the relay, or once the proxy holds HELD
HELD = 8 << 20  # bytes written and not yet sent, all connections together, past which reads are SMALL
HEADS_HELD = 8 << 20  # bytes read before the relay (request heads), all connections together; past it, dropped
MAX_CONNECTIONS = 1024  # at once; more are closed as they arrive
MAX_REPORTED = 1000  # distinct refused targets said on stderr and in --json-status
HOP_BY_HOP = {b"connection", b"proxy-connection", b"keep-alive", b"proxy-authorization", b"proxy-authenticate",
              b"te", b"trailer", b"upgrade"}
SOCKS_OK, SOCKS_FAILURE, SOCKS_NOT_ALLOWED, SOCKS_HOST_UNREACHABLE, SOCKS_REFUSED = 0, 1, 2, 4, 5
SOCKS_COMMAND_NOT_SUPPORTED, SOCKS_ADDRESS_NOT_SUPPORTED = 7, 8


class Config:
    """What the proxy needs from the plan: the lists, the header timeout, where to report."""

    def __init__(self, allow: list[str], deny: list[str], header_timeout: float, verbose: bool = False,
                 status_fd: int | None = None, resolver=None):
        from rootsand.net import allowlist

        self.allow = allowlist.parse_entries(allow)
        self.deny = allowlist.parse_entries(deny, "deny entry")
        self.header_timeout = header_timeout
        self.verbose = verbose
        self.status_fd = status_fd
        self.resolver = resolver  # async (host, port) -> [address]; the loop's getaddrinfo when None
        self.reported: set[tuple[str, str]] = set()  # (target, reason) said on stderr
        self.refused: dict[str, list] = {}  # target -> [count, first reason]: the summary at the end
        self.fake = None  # capture.FakeAddresses, made by serve()
        self.connections = 0
        self.heads = 0  # bytes read before the relay and not yet used, of all sockets (HEADS_HELD)
        self.held = 0  # bytes written and not yet sent, of all sockets (HELD)
        self.tasks = set()  # asyncio holds tasks weakly: a pending one must be held here, or a connection
        # whose client half-closed could be collected while it waits for the answer
        self.newline = "\r\n" if os.isatty(2) else "\n"  # the terminal may be in raw mode for the relay

    def say(self, text: str) -> None:
        from rootsand.errors import printable

        try:
            os.write(2, f"rootsand: {printable(text)}{self.newline}".encode())
        except OSError:
            pass

    def blocked(self, what: str, why: str) -> None:
        """A refusal of `what` (HOST:PORT) because of `why` (a sentence naming it): said once per target and
        reason, counted per target for the summary()."""
        if what in self.refused:
            self.refused[what][0] += 1
        elif len(self.refused) < MAX_REPORTED:
            self.refused[what] = [1, why]
        else:
            self.refused.setdefault("", [0, ""])[0] += 1  # the others, counted together
        if (what, why) in self.reported or len(self.reported) > MAX_REPORTED:
            return
        self.reported.add((what, why))
        if len(self.reported) > MAX_REPORTED:
            self.say(f"blocked more than {MAX_REPORTED} targets or reasons: not naming the others")
            return
        self.say(f"blocked: {why}")
        self.status({"blocked": what, "reason": why})

    def summary(self) -> None:
        """At the end: one line per refused target with how often it was refused."""
        for what, (count, why) in self.refused.items():
            times = "once" if count == 1 else f"{count} times"
            if what:
                self.say(f"blocked {what} {times} in all")
                self.status({"blocked": what, "reason": why, "count": count})
            else:
                self.say(f"blocked other targets {times} in all")
        self.refused.clear()

    def status(self, record: dict) -> None:
        if self.status_fd is not None:
            try:
                os.write(self.status_fd, (json.dumps(record) + "\n").encode())
            except OSError:
                pass  # a status reader that went away: the launcher warns about it once


# ------------------------------------------------------------------------------------------ the process

def start(listeners: dict, config_args: dict, status_fd: int | None) -> int:
    """Fork the proxy process serving `listeners` ({"proxy": fd, "dns": fd, "capture": {port: fd},
    "refusals": fd or None}); its pid. The caller closes its copies of the fds."""
    launcher = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        import gc

        from rootsand.linux import libc

        gc.enable()  # each connection leaves reference cycles (asyncio, h11): never with the collector off
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != launcher:
            os._exit(1)
        os.setpgid(0, 0)  # the terminal's ^C is for the launcher, which passes it to the sandbox
        from rootsand.runtime.init import FORWARDED

        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)  # the launcher's handlers are not ours
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGWINCH, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGPIPE else signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        keep = {0, 1, 2, listeners["proxy"], listeners["dns"], *listeners["capture"].values(), listeners.get("refusals")}
        keep |= {status_fd} if status_fd is not None else set()
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    pass
        null = os.open("/dev/null", os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(null, 1)  # a reader of rootsand's output waits for its end of file, not for ours
        os.close(null)
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # two fds per connection
        serve(listeners, Config(status_fd=status_fd, **config_args))
        code = 0
    except BaseException as e:  # noqa: BLE001 - a forked child must never unwind into the launcher
        try:
            os.write(2, f"rootsand: warning: the proxy stopped: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def serve(listeners: dict, config: Config) -> None:
    import asyncio
    import socket

    from rootsand.net import capture

    config.fake = capture.FakeAddresses()

    def stop(*_) -> None:  # the launcher's SIGTERM at the end of the run: the summary, and no more
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        config.summary()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)

    def listener(fd: int):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        return sock

    async def main() -> None:
        servers = [await listen(config, sock=listener(listeners["proxy"]))]
        for fd in listeners["capture"].values():
            servers.append(await asyncio.get_running_loop().create_server(
                lambda: _socket_type()(config, handle_captured), sock=listener(fd)))
        _serve_dns(listener(listeners["dns"]), config)
        if listeners.get("refusals") is not None:
            _watch_refusals(listener(listeners["refusals"]), config)
        await asyncio.gather(*(server.serve_forever() for server in servers))

    asyncio.run(main())


async def listen(config: Config, **where):
    """The proxy's asyncio server on `sock=` (or `host=`, `port=`): a task runs handle() for each client."""
    import asyncio

    return await asyncio.get_running_loop().create_server(lambda: _socket_type()(config, handle), **where)


# ------------------------------------------------------------------------------------------ sockets

@functools.cache
def _socket_type():
    """Socket as an asyncio.BufferedProtocol, which chooses the size of each read. Made on first use, in the
    proxy process: the launcher imports this module and must not pay for asyncio."""
    import asyncio

    return type("Socket", (Socket, asyncio.BufferedProtocol), {"buffer": memoryview(bytearray(CHUNK))})


class Socket:
    """One socket of a connection, the client's or the upstream's. Before _relay() it is read only when a
    read*() asks, SMALL bytes at a time, and keeps what it read (the request head). In the relay it passes
    each read to its peer and is read only while the peer's transport has nothing left unsent: a side that
    does not read stops the other from being read, and the kernel's socket buffers do the buffering. So the
    proxy holds at most one read per direction, CHUNK bytes, or SMALL once it holds HELD in all."""

    def __init__(self, config: Config, handler=None):
        self.config, self.handler = config, handler  # handler(self) serves a client's connection
        self.transport = None
        self.peer: "Socket | None" = None  # set by _relay()
        self.data = bytearray()  # read and not yet used (before the relay)
        self.eof = False  # nothing more will be read
        self.waiter = None  # a future a read*() waits on for more data
        self.lost = None  # a future, done when the socket is closed
        self.held = 0  # bytes written and not yet sent

    # asyncio's calls

    def connection_made(self, transport) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        self.transport, self.lost = transport, loop.create_future()
        transport.set_write_buffer_limits(0)  # pause_writing() as soon as something is left unsent
        if self.handler is None:
            return
        if self.config.connections >= MAX_CONNECTIONS:
            transport.abort()
            return
        self.config.connections += 1
        task = loop.create_task(self.handler(self))
        self.config.tasks.add(task)
        task.add_done_callback(self.config.tasks.discard)

    def get_buffer(self, sizehint: int):
        # one buffer for all sockets: buffer_updated() takes out what came at once
        return self.buffer if self.peer is not None and self.config.held < HELD else self.buffer[:SMALL]

    def buffer_updated(self, nbytes: int) -> None:
        if self.peer is not None:
            self.peer.write(bytes(self.buffer[:nbytes]))  # a copy: the transport may keep it
            return
        self.data += self.buffer[:nbytes]
        self.config.heads += nbytes
        if self.config.heads > HEADS_HELD:
            self.transport.abort()  # too much is being read at once: this connection is dropped
            return
        self.transport.pause_reading()  # until a read*() asks for more
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        if self.peer is not None:
            self.peer.end()  # the peer may still answer
            if self.peer.eof:
                self.transport.close()
                self.peer.transport.close()
        return True  # keep the socket open for what the peer still sends

    def connection_lost(self, exc) -> None:
        self.eof = True
        self._take(len(self.data))
        self._hold(-self.held)
        self._wake()
        if not self.lost.done():  # cancelled when the loop ends
            self.lost.set_result(None)
        if self.peer is not None:
            self.peer.transport.close()  # after what it still has to send

    def pause_writing(self) -> None:  # our transport keeps bytes it could not send: stop reading their source
        if self.peer is not None:
            self.peer.read_when(False)

    def resume_writing(self) -> None:  # all sent
        self._hold(-self.held)
        if self.peer is not None:
            self.peer.read_when(True)

    def write(self, data: bytes) -> None:
        """Send, counting what the transport keeps unsent in the proxy's total (HELD)."""
        unsent = self.transport.get_write_buffer_size()
        self.transport.write(data)
        self._hold(self.transport.get_write_buffer_size() - unsent)

    def end(self) -> None:
        """Send the end of file; a connection that is gone already is closed."""
        try:
            self.transport.write_eof()
        except OSError:  # the socket's shutdown() when nothing is left to send
            self.transport.abort()

    def _hold(self, n: int) -> None:
        self.held += n
        self.config.held += n

    # the request head

    async def readexactly(self, n: int) -> bytes:
        import asyncio

        while len(self.data) < n:
            if self.eof:
                raise asyncio.IncompleteReadError(bytes(self.data), n)
            await self._more()
        return self._take(n)

    async def readuntil(self, separator: bytes) -> bytes:
        """Up to and including `separator`, which must come within HEADER_LIMIT bytes."""
        import asyncio

        while (end := self.data.find(separator, 0, HEADER_LIMIT)) < 0:
            if len(self.data) >= HEADER_LIMIT:
                raise asyncio.LimitOverrunError("request head too large", len(self.data))
            if self.eof:
                raise asyncio.IncompleteReadError(bytes(self.data), None)
            await self._more()
        return self._take(end + len(separator))

    async def _more(self) -> None:
        import asyncio

        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.resume_reading()
        try:
            await self.waiter
        finally:
            self.waiter = None

    async def finish(self, linger: float) -> None:
        """Close, and wait until closed. Before the relay the answer was ours: end our side, then drop what
        the client still sends until it ends its own (for at most `linger` seconds), since closing with bytes
        unread resets the connection, and the client could lose the answer."""
        import asyncio

        async def drop() -> None:
            while not self.eof:
                self._take(len(self.data))
                await self._more()

        if self.peer is None:
            self.end()
            try:
                await asyncio.wait_for(drop(), linger)
            except asyncio.TimeoutError:
                pass
        self.transport.close()
        await self.lost

    def _take(self, n: int) -> bytes:
        data = bytes(self.data[:n])
        del self.data[:n]
        self.config.heads -= n
        return data

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def read_when(self, ok: bool) -> None:
        if self.eof:
            return  # asyncio stopped reading at the end of file: resuming would report it again
        if ok:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()


async def _relay(client: Socket, upstream: Socket) -> None:
    """Copy both ways until both sockets are closed."""
    import asyncio

    client.peer, upstream.peer = upstream, client
    for side in (client, upstream):
        side.peer.write(side._take(len(side.data)))  # read before the relay began
    for side in (client, upstream):
        if side.lost.done():
            side.peer.transport.close()
        elif side.eof:
            side.eof_received()
        side.read_when(not side.peer.transport.get_write_buffer_size())
    try:
        await asyncio.gather(client.lost, upstream.lost)
    finally:
        upstream.transport.close()


# ------------------------------------------------------------------------------------------ connections

async def handle(client: Socket) -> None:
    """One client connection: SOCKS5 when its first byte is 5, HTTP otherwise."""
    import asyncio

    config = client.config
    try:
        try:
            first = await asyncio.wait_for(client.readexactly(1), config.header_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return
        if first == b"\x05":
            await _socks5(client, config)
        else:
            await _http(first, client, config)
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    except Exception as e:  # noqa: BLE001 - one odd request ends its own connection, never the proxy
        if config.verbose:
            config.say(f"proxy: dropped a connection: {type(e).__name__}: {e}")
    finally:
        await client.finish(config.header_timeout)
        config.connections -= 1


async def _open_upstream(host: str, port: int, config: Config):
    """(Socket, None) for an allowed HOST:PORT, or (None, (why, kind)) where kind is "blocked" or "failed"."""
    from rootsand.net import allowlist

    if config.fake is not None:  # a client that resolved the name itself (socks5://) asks for its fake address
        host = config.fake.name_of(host) or host
    decision = allowlist.decide(host, port, config.allow, config.deny)
    name = allowlist.normalise_host(host) or host
    if not decision.allowed:
        config.blocked(allowlist.target(name, port), decision.reason)
        return None, (decision.reason, "blocked")
    return await _connect(name, port, decision, config)


async def _connect(name: str, port: int, decision, config: Config):
    """_open_upstream() for a name (normalised) or address that decide() allowed."""
    import asyncio

    from rootsand.net import allowlist

    what = allowlist.target(name, port)
    if decision.entry.address is not None or name == allowlist.HOST_INTERNAL:
        addresses, why = allowlist.vet(name, port, decision, [], config.allow)
    else:
        try:
            if config.resolver is not None:
                found = await config.resolver(name, port)
            else:
                infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=1)  # SOCK_STREAM
                found = [info[4][0] for info in infos]
        except OSError as e:
            return None, (f"cannot resolve {name}: {e.strerror or e}", "failed")
        addresses, why = allowlist.vet(name, port, decision, found, config.allow)
        if not addresses:
            config.blocked(what, why)
            return None, (why, "blocked")
    last = "no address"
    loop = asyncio.get_running_loop()
    for address in addresses:
        try:
            _, upstream = await asyncio.wait_for(loop.create_connection(lambda: _socket_type()(config), address, port),
                                                 CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            last = getattr(e, "strerror", None) or "timed out"
            continue
        if config.verbose:
            config.say(f"allowed {what}" + (f" ({address})" if address != name else "")
                       + f" by {decision.entry.text}")
        return upstream, None
    return None, (f"cannot connect to {what}: {last}", "failed")


# ------------------------------------------------------------------------------------------ the capture

async def handle_captured(client: Socket) -> None:
    """A connection the sandbox opened to any address on a captured port, without the proxy variables."""
    import asyncio

    config = client.config
    try:
        await _captured(client, config)
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    except Exception as e:  # noqa: BLE001 - one odd connection ends itself, never the proxy
        if config.verbose:
            config.say(f"proxy: dropped a captured connection: {type(e).__name__}: {e}")
    finally:
        await client.finish(config.header_timeout)
        config.connections -= 1


async def _captured(client: Socket, config: Config) -> None:
    import asyncio

    from rootsand.net import allowlist, capture

    address, port = client.transport.get_extra_info("sockname")[:2]
    if address.startswith("127."):
        what = allowlist.target(address, port)
        _refuse_captured(client, config, port, what, f"{what} is the sandbox's own loopback, where rootsand takes "
                                                     f"port {port} for its capture (80, 443 and the ports allow entries name)")
        return
    name = config.fake.name_of(address) if capture.is_fake(address) else address
    if name is None:
        what = allowlist.target(address, port)
        _refuse_captured(client, config, port, what, f"{what} is no address rootsand's DNS gave out, or it "
                                                     "stands for no name any more (look the name up again)")
        return
    what = allowlist.target(name, port)
    decision = allowlist.decide(name, port, config.allow, config.deny)
    if not decision.allowed:
        _refuse_captured(client, config, port, what, decision.reason)
        return
    named = decision.entry.address is None  # a name, whose TLS and HTTP must ask for it
    upstream = None
    if port not in (80, 443):
        upstream, failure = await _connect(name, port, decision, config)
        if upstream is None:
            _refuse_captured(client, config, port, what, failure[0], "said" if failure[1] == "blocked" else "failed")
            return
        await _first_to_speak(client, upstream)  # a server may speak first (SSH, SMTP): then no name to check
        named = named and bool(client.data) and capture.looks_like_tls(client.data)
    if named:
        try:
            asked, why = await asyncio.wait_for(_asked_name(client, port), config.header_timeout)
        except asyncio.TimeoutError:
            asked, why = None, "the client sent no request within the header timeout"
        if not why and allowlist.normalise_host(allowlist.split_host_port(asked)[0] if port == 80 else asked) != name:
            kind = "the TLS server name" if port != 80 else "the Host header"
            why = f"{what}: {kind} is {asked!r}, another host than {name}"
        elif why:
            why = f"{what}: {why}"
        if why:
            if upstream is not None:
                upstream.transport.abort()
            _refuse_captured(client, config, port, what, why)
            return
    if upstream is None:
        upstream, failure = await _connect(name, port, decision, config)
        if upstream is None:
            _refuse_captured(client, config, port, what, failure[0], "said" if failure[1] == "blocked" else "failed")
            return
    await _relay(client, upstream)


async def _first_to_speak(client: Socket, upstream: Socket) -> None:
    """Wait until either side has sent something (or ended)."""
    import asyncio

    if client.data or upstream.data or client.eof or upstream.eof:
        return
    either = client.waiter = upstream.waiter = asyncio.get_running_loop().create_future()  # one future: no tasks
    client.transport.resume_reading()
    upstream.transport.resume_reading()
    try:
        await either
    finally:
        client.waiter = upstream.waiter = None


async def _asked_name(client: Socket, port: int) -> tuple[str | None, str]:
    """The host the client's first bytes ask for: a TLS ClientHello's server name, or on port 80 an HTTP
    request's Host; (None, why) when they ask for none. What was read stays for the relay."""
    from rootsand.net import capture

    while True:
        data = bytes(client.data)
        if data and capture.looks_like_tls(data):
            name, why = capture.tls_server_name(data)
            if why != capture.MORE:
                return name, why
            if len(data) >= HEADER_LIMIT:  # many tiny records: each read is parsed again, so the bound is here
                return None, "a TLS ClientHello larger than 64 KiB"
        elif data and port == 80:
            end = data.find(b"\r\n\r\n", 0, HEADER_LIMIT)
            if end >= 0:
                return capture.http_host(data[:end])
            if len(data) >= HEADER_LIMIT:
                return None, "an HTTP request head larger than 64 KiB"
        elif data:
            return None, "no TLS ClientHello" + (" on port 443" if port == 443 else "")
        if client.eof:
            return None, "the client ended before asking for a host"
        await client._more()


def _refuse_captured(client: Socket, config: Config, port: int, what: str, why: str, kind: str = "blocked") -> None:
    """Refuse a captured connection: on port 80 with a 403 that says why, else with a reset (a TLS client
    shows no body). kind: "blocked" (said here on stderr and in --json-status, and counted), "said" (a
    refusal _connect() said and counted already), "failed" (no refusal: the host could not be reached)."""
    if kind == "blocked":
        config.blocked(what, why)
    elif kind == "failed" and (what, why) not in config.reported and len(config.reported) <= MAX_REPORTED:
        config.reported.add((what, why))  # said once: the client sees only a reset
        config.say(f"proxy: {why}")
    if port == 80 and kind != "failed":
        client.write(_response(403, "Forbidden", f"blocked by rootsand: {why}\n"))
        return
    import socket
    import struct

    sock = client.transport.get_extra_info("socket")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    except OSError:
        pass
    client.transport.abort()


def _serve_dns(sock, config: Config) -> None:
    """Answer the sandbox's DNS queries (capture.dns_answer) from the address each was sent to."""
    import asyncio
    import socket
    import struct

    from rootsand.net import allowlist, capture

    names: dict[str, str | None] = {}  # as asked -> as compared (normalise_host() is the cost of an answer)

    def address_of(text: str) -> str | None:
        name = names.get(text, "")
        if name == "":
            name = allowlist.normalise_host(text)
            if name is not None and allowlist._address(name) is not None:
                name = None  # an address literal is no name
            if len(names) >= 4096:
                names.clear()
            names[text] = name
        return None if name is None else config.fake.address_of(name)

    def readable() -> None:
        for _ in range(64):  # then other work gets its turn
            try:
                query, ancillary, _, sender = sock.recvmsg(512, socket.CMSG_SPACE(12))
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue  # an ICMP error of an earlier answer's
            answer = capture.dns_answer(query, address_of)
            if answer is None:
                continue
            control = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("i4s4s", 0, data[8:12], bytes(4)))
                       for level, kind, data in ancillary
                       if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12]
            try:
                sock.sendmsg([answer], control, 0, sender)
            except OSError:
                pass

    asyncio.get_running_loop().add_reader(sock.fileno(), readable)


IP_PKTINFO = 8  # Linux's; the socket module names it only on some builds


def _watch_refusals(sock, config: Config) -> None:
    """Report what the kernel refused inside (capture.kernel_refusal) like the proxy's own refusals."""
    import asyncio

    from rootsand.net import allowlist, capture

    def readable() -> None:
        for _ in range(64):
            try:
                packet = sock.recv(256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            refused = capture.kernel_refusal(packet)
            if refused is None:
                continue
            kind, address, port = refused
            name = (config.fake.name_of(address) if capture.is_fake(address) else None) or address
            what = allowlist.target(name, port)
            if kind == "udp":
                what += "/udp"
                config.blocked(what, f"{what}: the proxy mode carries no UDP (DNS it answers itself)")
                continue
            decision = allowlist.decide(name, port, config.allow, config.deny)
            config.blocked(what, decision.reason or f"{what}: nothing listens on port {port} inside")

    asyncio.get_running_loop().add_reader(sock.fileno(), readable)


# ------------------------------------------------------------------------------------------ HTTP

def _response(status: int, reason: str, body: str = "", extra: str = "") -> bytes:
    data = body.encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n{extra}\r\n").encode() + data


async def _http(first: bytes, client: Socket, config: Config) -> None:
    import asyncio

    import h11

    try:
        head = first + await asyncio.wait_for(client.readuntil(b"\r\n\r\n"), config.header_timeout)
    except asyncio.TimeoutError:
        client.write(_response(408, "Request Timeout", "rootsand proxy: the request head did not arrive in time\n"))
        return
    except asyncio.LimitOverrunError:
        client.write(_response(431, "Request Header Fields Too Large", "rootsand proxy: request head too large\n"))
        return
    except asyncio.IncompleteReadError:
        return
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=HEADER_LIMIT)
    parser.receive_data(head)
    try:
        request = parser.next_event()
    except h11.RemoteProtocolError as e:
        client.write(_response(400, "Bad Request", f"rootsand proxy: {e}\n"))
        return
    if not isinstance(request, h11.Request):
        client.write(_response(400, "Bad Request", "rootsand proxy: not an HTTP request\n"))
        return
    target = request.target.decode("ascii", "replace")
    method = request.method
    if method != b"CONNECT":
        from urllib.parse import urlsplit

        url = urlsplit(target)
        origin = _origin_form_head(request, url) if url.scheme.lower() == "http" and url.hostname else b""
    # What the parse made (h11 keeps each header as objects: a 60 KiB head of tiny headers is ~2 MB) goes
    # before any wait: a connection held open must hold no more than its few bytes to send.
    del head, parser, request
    if method == b"CONNECT":
        from rootsand.net.allowlist import split_host_port

        host, port_text = split_host_port(target)
        if not port_text or not port_text.isdigit() or len(port_text) > 5:
            client.write(_response(400, "Bad Request", "rootsand proxy: CONNECT needs HOST:PORT\n"))
            return
        upstream, failure = await _open_upstream(host, int(port_text), config)
        if upstream is None:
            _refuse_http(client, failure)
            return
        client.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await _relay(client, upstream)
        return
    if not origin:
        why = ("use CONNECT for https:// (HTTPS_PROXY)" if url.scheme.lower() == "https" else
               "this is rootsand's proxy: a request must name its host (http://HOST/PATH)")
        client.write(_response(400, "Bad Request", f"rootsand proxy: {why}\n"))
        return
    try:
        port = url.port or 80
        if len(url.netloc.rpartition(":")[2]) > 5 and url.port:
            raise ValueError("port")  # 000...080: a number, but no port anyone writes
    except ValueError:
        client.write(_response(400, "Bad Request", "rootsand proxy: invalid port\n"))
        return
    if config.heads + len(origin) > HEADS_HELD:  # heads waiting for their upstream count with those being read
        client.write(_response(503, "Service Unavailable", "rootsand proxy: too many requests at once\n"))
        return
    config.heads += len(origin)
    try:
        upstream, failure = await _open_upstream(url.hostname, port, config)
        if upstream is None:
            _refuse_http(client, failure)
            return
        try:
            upstream.write(origin)
        except BaseException:
            upstream.transport.close()
            raise
    finally:
        config.heads -= len(origin)
    del origin
    await _relay(client, upstream)  # the body follows the head as it came; one request per connection


def _origin_form_head(request, url) -> bytes:
    """The request as the origin server wants it: origin-form target, Host from the URL, no hop-by-hop
    headers (nor those Connection names), and Connection: close, so this connection carries one request
    and the next one, which may name another host, is judged on its own."""
    named = set()
    for name, value in request.headers:
        if name == b"connection":
            named |= {token.strip().lower() for token in value.split(b",")}
    from rootsand.net.allowlist import normalise_host, target

    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    host = normalise_host(url.hostname) or url.hostname  # allowed, so a valid name or address
    authority = target(host, url.port) if url.port and url.port != 80 else (f"[{host}]" if ":" in host else host)
    lines = [f"{request.method.decode()} {path} HTTP/1.1".encode(), b"Host: " + authority.encode("ascii")]
    for name, value in request.headers:
        if name in HOP_BY_HOP or name in named or name == b"host":
            continue
        lines.append(name + b": " + value)
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _refuse_http(client: Socket, failure) -> None:
    why, kind = failure
    if kind == "blocked":
        client.write(_response(403, "Forbidden", f"blocked by rootsand: {why}\n"))
    else:
        client.write(_response(502, "Bad Gateway", f"rootsand proxy: {why}\n"))


# ------------------------------------------------------------------------------------------ SOCKS5

def socks_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


async def _socks5(client: Socket, config: Config) -> None:
    """RFC 1928, CONNECT only, no authentication; host names (socks5h) or addresses."""
    import asyncio
    import ipaddress

    async def request():
        count = (await client.readexactly(1))[0]
        methods = await client.readexactly(count)
        if 0 not in methods:
            client.write(b"\x05\xff")  # no acceptable method
            return None
        client.write(b"\x05\x00")
        version, command, _, kind = await client.readexactly(4)
        if version != 5:
            return None
        if kind == 1:
            host = str(ipaddress.IPv4Address(await client.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await client.readexactly(16)))
        elif kind == 3:
            length = (await client.readexactly(1))[0]
            host = (await client.readexactly(length)).decode("ascii", "replace")
        else:
            client.write(socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED))
            return None
        port = int.from_bytes(await client.readexactly(2), "big")
        if command != 1:
            client.write(socks_reply(SOCKS_COMMAND_NOT_SUPPORTED))
            return None
        return host, port

    try:
        asked = await asyncio.wait_for(request(), config.header_timeout)
    except asyncio.TimeoutError:
        return
    if asked is None:
        return
    upstream, failure = await _open_upstream(*asked, config)
    if upstream is None:
        kind = failure[1]
        client.write(socks_reply(SOCKS_NOT_ALLOWED if kind == "blocked" else SOCKS_REFUSED))
        return
    client.write(socks_reply(SOCKS_OK))
    await _relay(client, upstream)


def main() -> None:  # pragma: no cover - for trying the proxy by hand: python -m rootsand.net.proxy PORT HOST...
    import socket

    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns.bind(("127.0.0.1", 0))
    serve({"proxy": listener.detach(), "dns": dns.detach(), "capture": {}}, Config(sys.argv[2:], [], 10.0, verbose=True))


if __name__ == "__main__":
    main()
