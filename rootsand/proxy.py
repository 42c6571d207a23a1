"""The proxy mode's filtering proxy: HTTP CONNECT, plain HTTP forwarding and SOCKS5 on one endpoint.

The endpoint is a TCP socket on 127.0.0.1 inside the sandbox's network namespace: the setup process made
it there and passed it out over a Unix socket (inside.py), so the sandbox connects to its own loopback
while this process, on the host's side, accepts and connects out. No port is opened on the host, and no
relay runs inside.

This process is forked by the launcher once the endpoint exists (start()). It dies with the launcher
(PR_SET_PDEATHSIG), and the launcher kills it when the sandbox ends. It is the only place asyncio and h11
are imported: every other mode pays nothing for them.

Every request names a host; allowlist.decide() judges it before any lookup, the lookup runs here on the
host, allowlist.vet() judges the addresses. A refusal is a 403 (SOCKS: "not allowed by ruleset"), one
`rootsand: blocked HOST:PORT` line on stderr per target and a {"blocked": ...} line in --json-status.
"""

import json
import os
import signal
import sys

HEADER_LIMIT = 64 * 1024  # request heads above this are refused (431)
CONNECT_TIMEOUT = 15.0
CHUNK = 256 * 1024
# The proxy runs outside the sandbox's limits: what a sandbox can make it hold is capped here.
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
        from rootsand import allowlist

        self.allow = allowlist.parse_entries(allow)
        self.deny = allowlist.parse_entries(deny, "deny entry")
        self.header_timeout = header_timeout
        self.verbose = verbose
        self.status_fd = status_fd
        self.resolver = resolver  # async (host, port) -> [address]; the loop's getaddrinfo when None
        self.reported: set[str] = set()
        self.connections = 0
        self.newline = "\r\n" if os.isatty(2) else "\n"  # the terminal may be in raw mode for the relay

    def say(self, text: str) -> None:
        from rootsand.errors import printable

        try:
            os.write(2, f"rootsand: {printable(text)}{self.newline}".encode())
        except OSError:
            pass

    def blocked(self, what: str) -> None:
        if what in self.reported or len(self.reported) > MAX_REPORTED:
            return
        self.reported.add(what)
        if len(self.reported) > MAX_REPORTED:
            self.say(f"blocked more than {MAX_REPORTED} hosts: not naming the others")
            return
        self.say(f"blocked {what}")
        if self.status_fd is not None:
            try:
                os.write(self.status_fd, (json.dumps({"blocked": what}) + "\n").encode())
            except OSError:
                pass  # a status reader that went away: the launcher warns about it once


# ------------------------------------------------------------------------------------------ the process

def start(listen_fd: int, config_args: dict, status_fd: int | None) -> int:
    """Fork the proxy process serving `listen_fd`; its pid. The caller closes its copy of the fd."""
    launcher = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        from rootsand import libc

        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != launcher:
            os._exit(1)
        os.setpgid(0, 0)  # the terminal's ^C is for the launcher, which passes it to the sandbox
        from rootsand.init import FORWARDED

        for sig in FORWARDED:
            signal.signal(sig, signal.SIG_DFL)  # the launcher's handlers are not ours
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGTTOU, signal.SIGTTIN, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for sig in (signal.SIGTERM, signal.SIGWINCH, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL if sig != signal.SIGPIPE else signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        keep = {0, 1, 2, listen_fd} | ({status_fd} if status_fd is not None else set())
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
        serve(listen_fd, Config(status_fd=status_fd, **config_args))
        code = 0
    except BaseException as e:  # noqa: BLE001 - a forked child must never unwind into the launcher
        try:
            os.write(2, f"rootsand: warning: the proxy stopped: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def serve(listen_fd: int, config: Config) -> None:
    import asyncio
    import socket

    listener = socket.socket(fileno=listen_fd)
    listener.setblocking(False)

    tasks = set()  # asyncio keeps only weak references to tasks: a pending one must be held here, or a
    # connection whose client half-closed could be collected while it waits for the answer

    def connected(reader, writer) -> None:
        task = asyncio.get_running_loop().create_task(handle(reader, writer, config))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def main() -> None:
        server = await asyncio.start_server(connected, sock=listener, limit=HEADER_LIMIT)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------ connections

async def handle(reader, writer, config: Config) -> None:
    """One client connection: SOCKS5 when its first byte is 5, HTTP otherwise."""
    import asyncio

    if config.connections >= MAX_CONNECTIONS:
        writer.close()
        return
    config.connections += 1
    try:
        try:
            first = await asyncio.wait_for(reader.readexactly(1), config.header_timeout)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError):
            return
        if first == b"\x05":
            await _socks5(reader, writer, config)
        else:
            await _http(first, reader, writer, config)
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        pass
    except Exception as e:  # noqa: BLE001 - one odd request ends its own connection, never the proxy
        if config.verbose:
            config.say(f"proxy: dropped a connection: {type(e).__name__}: {e}")
    finally:
        config.connections -= 1
        writer.close()


async def _open_upstream(host: str, port: int, config: Config):
    """(reader, writer) to an allowed HOST:PORT, or (None, (why, kind)) where kind is "blocked" or "failed"."""
    import asyncio

    from rootsand import allowlist

    decision = allowlist.decide(host, port, config.allow, config.deny)
    name = allowlist.normalise_host(host) or host
    what = allowlist.target(name, port)
    if not decision.allowed:
        config.blocked(what)
        return None, (decision.reason, "blocked")
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
            config.blocked(what)
            return None, (why, "blocked")
    last = "no address"
    for address in addresses:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port, limit=CHUNK),
                                                    CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            last = getattr(e, "strerror", None) or "timed out"
            continue
        if config.verbose:
            config.say(f"allowed {what}" + (f" ({address})" if address != name else "")
                       + f" by {decision.entry.text}")
        return (reader, writer), None
    return None, (f"cannot connect to {what}: {last}", "failed")


async def _pipe(reader, writer) -> None:
    """Copy until end of file, then half-close the other side (the peer may still answer)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def _relay(client_reader, client_writer, upstream) -> None:
    import asyncio

    _, up_writer = upstream
    try:
        await asyncio.gather(_pipe(client_reader, up_writer), _pipe(upstream[0], client_writer))
    finally:
        up_writer.close()


# ------------------------------------------------------------------------------------------ HTTP

def _response(status: int, reason: str, body: str = "", extra: str = "") -> bytes:
    data = body.encode()
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n{extra}\r\n").encode() + data


async def _http(first: bytes, reader, writer, config: Config) -> None:
    import asyncio

    import h11

    try:
        head = first + await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), config.header_timeout)
    except asyncio.TimeoutError:
        writer.write(_response(408, "Request Timeout", "rootsand proxy: the request head did not arrive in time\n"))
        return
    except asyncio.LimitOverrunError:
        writer.write(_response(431, "Request Header Fields Too Large", "rootsand proxy: request head too large\n"))
        return
    except asyncio.IncompleteReadError:
        return
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=HEADER_LIMIT)
    parser.receive_data(head)
    try:
        request = parser.next_event()
    except h11.RemoteProtocolError as e:
        writer.write(_response(400, "Bad Request", f"rootsand proxy: {e}\n"))
        return
    if not isinstance(request, h11.Request):
        writer.write(_response(400, "Bad Request", "rootsand proxy: not an HTTP request\n"))
        return
    target = request.target.decode("ascii", "replace")
    if request.method == b"CONNECT":
        from rootsand.allowlist import split_host_port

        host, port_text = split_host_port(target)
        if not port_text or not port_text.isdigit() or len(port_text) > 5:
            writer.write(_response(400, "Bad Request", "rootsand proxy: CONNECT needs HOST:PORT\n"))
            return
        upstream, failure = await _open_upstream(host, int(port_text), config)
        if upstream is None:
            await _refuse_http(writer, failure)
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await _relay(reader, writer, upstream)
        return
    from urllib.parse import urlsplit

    url = urlsplit(target)
    if url.scheme.lower() != "http" or not url.hostname:
        why = ("use CONNECT for https:// (HTTPS_PROXY)" if url.scheme.lower() == "https" else
               "this is rootsand's proxy: a request must name its host (http://HOST/PATH)")
        writer.write(_response(400, "Bad Request", f"rootsand proxy: {why}\n"))
        return
    try:
        port = url.port or 80
        if len(url.netloc.rpartition(":")[2]) > 5 and url.port:
            raise ValueError("port")  # 000...080: a number, but no port anyone writes
    except ValueError:
        writer.write(_response(400, "Bad Request", "rootsand proxy: invalid port\n"))
        return
    upstream, failure = await _open_upstream(url.hostname, port, config)
    if upstream is None:
        await _refuse_http(writer, failure)
        return
    try:
        upstream[1].write(_origin_form_head(request, url))
    except BaseException:
        upstream[1].close()
        raise
    await _relay(reader, writer, upstream)  # the body follows the head as it came; one request per connection


def _origin_form_head(request, url) -> bytes:
    """The request as the origin server wants it: origin-form target, Host from the URL, no hop-by-hop
    headers (nor those Connection names), and Connection: close, so this connection carries one request
    and the next one, which may name another host, is judged on its own."""
    named = set()
    for name, value in request.headers:
        if name == b"connection":
            named |= {token.strip().lower() for token in value.split(b",")}
    from rootsand.allowlist import normalise_host, target

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


async def _refuse_http(writer, failure) -> None:
    why, kind = failure
    if kind == "blocked":
        writer.write(_response(403, "Forbidden", f"blocked by rootsand: {why}\n"))
    else:
        writer.write(_response(502, "Bad Gateway", f"rootsand proxy: {why}\n"))
    try:
        await writer.drain()
    except (ConnectionError, OSError):
        pass


# ------------------------------------------------------------------------------------------ SOCKS5

def socks_reply(code: int) -> bytes:
    return bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])


async def _socks5(reader, writer, config: Config) -> None:
    """RFC 1928, CONNECT only, no authentication; host names (socks5h) or addresses."""
    import asyncio
    import ipaddress

    async def request():
        count = (await reader.readexactly(1))[0]
        methods = await reader.readexactly(count)
        if 0 not in methods:
            writer.write(b"\x05\xff")  # no acceptable method
            return None
        writer.write(b"\x05\x00")
        version, command, _, kind = await reader.readexactly(4)
        if version != 5:
            return None
        if kind == 1:
            host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
        elif kind == 4:
            host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
        elif kind == 3:
            length = (await reader.readexactly(1))[0]
            host = (await reader.readexactly(length)).decode("ascii", "replace")
        else:
            writer.write(socks_reply(SOCKS_ADDRESS_NOT_SUPPORTED))
            return None
        port = int.from_bytes(await reader.readexactly(2), "big")
        if command != 1:
            writer.write(socks_reply(SOCKS_COMMAND_NOT_SUPPORTED))
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
        writer.write(socks_reply(SOCKS_NOT_ALLOWED if kind == "blocked" else SOCKS_REFUSED))
        return
    writer.write(socks_reply(SOCKS_OK))
    await _relay(reader, writer, upstream)


def main() -> None:  # pragma: no cover - for trying the proxy by hand: python -m rootsand.proxy PORT HOST...
    import socket

    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
    serve(listener.detach(), Config(sys.argv[2:], [], 10.0, verbose=True))


if __name__ == "__main__":
    main()
