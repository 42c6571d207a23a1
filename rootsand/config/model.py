"""The leaf values every layer shares: records, the tables of namespaces, capabilities, rlimits and mount
types, and the parsers of the values a user writes (in a profile or on the command line).

No system calls and no imports of other rootsand modules but errors: profile, spec and plan all build on
this, never on each other's internals.
"""

import re

from rootsand.errors import RootsandError


class Record:
    """A plain record: the fields of FIELDS (name -> default, or a callable making one) set once, compared by
    value, converted to JSON and back (NESTED names the Record type of fields that hold records or lists of
    them). Plain classes, not dataclasses: creating dataclasses costs start-up time on every run."""

    __slots__ = ()
    FIELDS: dict = {}
    NESTED: dict = {}

    def __init__(self, *args, **values):
        if len(args) > len(self.FIELDS):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.FIELDS)} values")
        values.update(zip(self.FIELDS, args))  # positional values in the order of FIELDS
        for name in values:
            if name not in self.FIELDS:
                raise TypeError(f"{type(self).__name__} has no field {name!r}")
        for name, default in self.FIELDS.items():
            value = values[name] if name in values else default() if callable(default) else default
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable: use replace()")

    def replace(self, **changes) -> "Record":
        return type(self)(**{**self.as_dict(), **changes})

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"

    def to_json(self) -> dict:
        return {name: to_json(value) for name, value in self.as_dict().items()}

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        values = {}
        for name in cls.FIELDS:
            if name not in data:
                continue
            value, kind = data[name], cls.NESTED.get(name)
            if kind is not None and value is not None:
                value = [kind.from_json(v) for v in value] if isinstance(value, list) else kind.from_json(value)
            values[name] = value
        return cls(**values)


def to_json(value):
    """Records, lists, tuples and dicts of plain values as JSON-ready data (tuples become lists)."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------- tables

ALL_NAMESPACES = ("user", "pid", "mount", "uts", "ipc", "net", "cgroup", "time")
DEFAULT_NAMESPACES = ("user", "pid", "mount", "uts", "ipc", "net", "cgroup")
# The names of the links under /proc/PID/ns/ for each namespace.
NAMESPACE_LINKS = {"user": "user", "mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net",
                   "cgroup": "cgroup", "pid": "pid", "time": "time"}

# Linux capabilities in number order (capability.h), CAP_CHOWN = 0 .. CAP_CHECKPOINT_RESTORE = 40.
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)

RLIMITS = ("nofile", "nproc", "fsize", "core", "cpu", "as", "data")
SIZE_RLIMITS = ("fsize", "core", "as", "data")  # measured in bytes, so "8G" makes sense

BIND_TYPES = ("bind", "ro-bind", "dev-bind")
# Every mount type and the keys it takes besides `type` and `dst`.
MOUNT_KEYS = {
    **{t: ("src", "optional") for t in BIND_TYPES},
    "bind": ("src", "optional", "create"),
    "tmpfs": ("size", "mode"),
    "proc": (),
    "dev": (),
    "mqueue": (),
    "overlay": ("lower", "upper", "optional"),
    "symlink": ("src",),
    "dir": ("mode",),
    "file": ("content", "mode"),
}
ALL_MOUNT_KEYS = ("type", "src", "lower", "upper", "dst", "optional", "create", "size", "mode", "content")

DEFAULT_ENV_KEEP = ("PATH", "TERM", "LANG", "LC_*", "HOME", "USER")
FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ---------------------------------------------------------------------------------------------- records

class Mount(Record):
    """One mount op of a profile or the command line, in the order it is applied."""

    __slots__ = ("type", "dst", "src", "optional", "create", "lower", "upper", "size", "mode", "content", "origin")
    FIELDS = {
        "type": "",  # one of MOUNT_KEYS
        "dst": "",  # absolute, normalised, never "/"
        "src": None,  # binds: absolute host path; symlink: the link target
        "optional": False,  # binds and overlay: skipped when a source is missing
        # bind: a missing source directory is made (the user's, 0700) before it is bound: True, or the name
        # of a program that must be on PATH for it (a cache of a tool the host does not have is not made)
        "create": None,
        "lower": list,  # overlay
        "upper": "tmpfs",  # overlay: "tmpfs" or a host directory that keeps the changes
        "size": None,  # tmpfs, bytes
        "mode": None,  # tmpfs, dir, file
        "content": "",  # file
        "origin": "",  # who asked for it: "profile FILE, line N" or the command-line option
    }

    def __eq__(self, other) -> bool:
        """The same op, whoever asked for it."""
        return type(other) is Mount and all(getattr(self, k) == getattr(other, k) for k in self.FIELDS if k != "origin")

    __hash__ = Record.__hash__


class User(Record):
    """Who the command runs as inside: root (0), keep-id (your own ids) or explicit ids."""

    __slots__ = ("mode", "uid", "gid")
    FIELDS = {"mode": "root", "uid": 0, "gid": 0}  # mode: "root" | "keep-id" | "ids"


class PortForward(Record):
    """One --publish: a host port forwarded to a port of the sandbox (slirp mode)."""

    __slots__ = ("host_addr", "host_port", "guest_port", "proto")
    FIELDS = {"host_addr": "127.0.0.1", "host_port": 0, "guest_port": 0, "proto": "tcp"}

    def __str__(self) -> str:
        return f"{self.host_addr}:{self.host_port}:{self.guest_port}/{self.proto}"


# ---------------------------------------------------------------------------------------------- parsers

def default_command(env: dict) -> tuple[list[str], list[str]]:
    """The command when none is given, and what runs when its program is not in the sandbox: the user's
    shell ($SHELL, as a terminal starts it), else /bin/sh."""
    shell = env.get("SHELL", "")
    if shell.startswith("/") and shell != "/bin/sh" and "\0" not in shell:
        return [shell], ["/bin/sh"]
    return ["/bin/sh"], []


def parse_user(text: str) -> User:
    """`root`, `keep-id`, `UID` or `UID:GID` (numbers only: names would have to come from the sandbox)."""
    if text in ("root", "keep-id"):
        return User(mode=text)
    m = re.fullmatch(r"(\d{1,10})(?::(\d{1,10}))?", text)
    if not m:
        raise RootsandError(f"invalid user {text!r}: expected root, keep-id, UID or UID:GID")
    uid = int(m.group(1))
    gid = int(m.group(2)) if m.group(2) is not None else uid
    if uid >= 2**32 - 1 or gid >= 2**32 - 1:
        raise RootsandError(f"invalid user {text!r}: ids must be below 4294967295")
    return User(mode="ids", uid=uid, gid=gid)


def parse_protect_entry(text: str) -> str:
    """A protected path as written in security.protect or --unprotect: relative to a writable bind, `~/`
    first for one that only counts where the bind is a home directory, `/` last for a directory (what is
    made when it is absent). Returned normalised."""
    home = text.startswith("~/")
    body = text[2:] if home else text
    is_dir = body.endswith("/")
    parts = [p for p in body.split("/") if p not in ("", ".")]
    if not parts or body.startswith("/") or ".." in parts or "\0" in text:
        raise RootsandError(f"invalid protected path {text!r}: expected a path relative to the writable "
                            "directory (.git/hooks/, .envrc, ~/.bashrc)")
    return ("~/" if home else "") + "/".join(parts) + ("/" if is_dir else "")


def parse_hide_entry(text: str) -> str:
    """A pattern of security.hide: a path relative to a writable directory, whose components may hold `*`,
    `?` and `[...]` (within a name) or be `**` (any number of directories, none too): `**/.env`,
    `config/*.pem`. Returned normalised."""
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts or "\0" in text or parts[-1] == "**":
        raise RootsandError(f"invalid hide pattern {text!r}: expected a pattern of files relative to the "
                            "writable directory (**/.env, **/*.pem, config/secret.json)")
    for part in parts:
        if "**" in part and part != "**":
            raise RootsandError(f"invalid hide pattern {text!r}: ** stands alone between slashes (**/x.pem)")
    return "/".join(parts)


def parse_home_path(text: str) -> str:
    """A path in the home directory as written in security.home_writable or --unprotect: `~/` and a
    relative path (`~/.cache/pip`). Returned normalised, without the final `/`."""
    parts = [p for p in text[2:].split("/") if p not in ("", ".")] if text.startswith("~/") else []
    if not parts or ".." in parts or "\0" in text:
        raise RootsandError(f"invalid home path {text!r}: expected ~/ and a path in your home directory "
                            "(~/.cache/pip)")
    return "~/" + "/".join(parts)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float, what: str = "timeout") -> float:
    """Seconds from `90`, `1.5`, `30s`, `10m`, `2h` or `1d`."""
    problem = f"invalid {what} {value!r}: expected seconds or a number with s, m, h or d"
    if isinstance(value, bool):
        raise RootsandError(problem)
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if not m:
            raise RootsandError(problem)
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not 0 < seconds < 10**9:
        raise RootsandError(f"invalid {what} {value!r}: must be more than 0")
    return seconds


INT_MAX = 2**63 - 1  # rlimits and sizes end up in 64-bit kernel fields
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value, what: str) -> int:
    """Bytes from an int or "2048", "512k", "64M", "1G", "2T" (binary units, any case)."""
    problem = f"invalid {what} {value!r}: expected bytes or a number with K, M, G or T"
    if isinstance(value, bool):
        raise RootsandError(problem)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        # At most 19 digits: int() of a longer run is slow or refused, and nothing is that big anyway.
        m = re.fullmatch(r"\s*(\d{1,19})\s*([kKmMgGtT]?)\s*", value)
        if not m:
            raise RootsandError(problem)
        size = int(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    else:
        raise RootsandError(problem)
    if size < 0:
        raise RootsandError(f"invalid {what} {value!r}: must not be negative")
    if size > INT_MAX:
        raise RootsandError(f"invalid {what} {value!r}: too large")
    return size


def validate_hostname(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})", name):
        raise RootsandError(f"invalid hostname {name!r}: letters, digits, '.' and '-', at most 64")
    return name


def validate_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise RootsandError(f"invalid sandbox name {name!r}: letters, digits, '_', '.' and '-', at most 64")
    return name


def parse_env_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise RootsandError(f"invalid environment assignment {text!r}: expected KEY=VALUE")
    return key, value


def env_entries(texts: list[str], host_env: dict[str, str], what: str = "-e") -> dict[str, str]:
    """podman's -e and --env-file entries: KEY=VALUE; KEY alone passes the host's value through (none when
    it is not set); KEY* every host variable whose name starts so."""
    out = {}
    for text in texts:
        if "=" in text:
            key, value = parse_env_assignment(text)
            out[key] = value
            continue
        name = text.removesuffix("*")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or text.count("*") > (text != name):
            raise RootsandError(f"invalid {what} {text!r}: expected KEY=VALUE, KEY (the host's value) or KEY*")
        out.update((k, v) for k, v in host_env.items() if (k.startswith(name) if text != name else k == name))
    return out


def parse_capability(name: str) -> str:
    """CAP_CHOWN, cap_chown or chown as CAP_CHOWN; RootsandError for a name the kernel does not have."""
    full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
    if full not in CAPABILITIES:
        raise RootsandError(f"unknown capability {name!r}", "names like CAP_CHOWN or chown; see capabilities(7)")
    return full


def parse_cpus(value) -> float:
    return _number(value, float, "number of cores", 0, 65536, "more than 0, at most 65536")


def parse_pids(value) -> int:
    return _number(value, int, "number of processes", 1, 2**31 - 1, f"1 to {2**31 - 1}")


def _number(value, kind, what: str, low, high, bounds: str):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise RootsandError(f"invalid {what} {value!r}") from None
    if not (low < number <= high if kind is float else low <= number <= high):  # also refuses nan and inf
        raise RootsandError(f"{value} is out of range ({bounds})")
    return number


def parse_publish(text: str) -> PortForward:
    """`[HOST_IP:]HOST_PORT:SANDBOX_PORT[/tcp|/udp]`; the host side listens on 127.0.0.1 by default."""
    import ipaddress

    m = re.fullmatch(r"(?:(.+):)?(\d{1,5}):(\d{1,5})(?:/(tcp|udp))?", text)
    ports = [int(p) for p in m.group(2, 3)] if m else []
    if not m or not all(1 <= p <= 65535 for p in ports):
        raise RootsandError(f"invalid port {text!r}: expected [IP:]HOSTPORT:SANDBOXPORT[/tcp|/udp], ports 1-65535")
    addr = (m.group(1) or "127.0.0.1").removeprefix("[").removesuffix("]")
    try:
        ipaddress.ip_address(addr)
    except ValueError:
        raise RootsandError(f"invalid port {text!r}: {addr!r} is not an IP address") from None
    return PortForward(proto=m.group(4) or "tcp", host_addr=addr, host_port=ports[0], guest_port=ports[1])
