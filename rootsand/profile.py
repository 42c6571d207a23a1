"""Profiles: TOML files -> a validated Profile, with `extends`, ${VARIABLES} and errors naming file, line and key.

Pure Python: the only contact with the host is reading profile files and checking that paths exist.
Every problem in a profile becomes one RootsandError; nothing else may escape load(), whatever the file holds.
"""

import math
import os
import pwd
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NoReturn

from rootsand import tomlfile
from rootsand.errors import RootsandError
from rootsand.seccomp import SOCKET_FAMILIES
from rootsand.security import RLIMITS as RLIMIT_RESOURCES
from rootsand.spec import (ALL_NAMESPACES, DEFAULT_ENV_KEEP, DEFAULT_NAMESPACES, parse_duration, parse_user,
                           validate_hostname)

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_EXTENDS_DEPTH = 16
INT_MAX = 2**63 - 1  # rlimits and sizes end up in 64-bit kernel fields

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
RLIMITS = tuple(RLIMIT_RESOURCES)  # nofile nproc fsize core cpu as: one list, in security.py
SIZE_RLIMITS = ("fsize", "core", "as")  # measured in bytes, so "8G" makes sense
BIND_TYPES = ("bind", "ro-bind", "dev-bind")
# The keys each mount type takes besides `type` and `dst`.
MOUNT_KEYS = {
    **{t: ("src", "optional") for t in BIND_TYPES},
    "tmpfs": ("size", "mode"),
    "proc": (),
    "dev": (),
    "mqueue": (),
    "overlay": ("lower", "upper", "optional"),
    "symlink": ("src",),
    "dir": ("mode",),
    "file": ("content", "mode"),
}
ALL_MOUNT_KEYS = ("type", "src", "lower", "upper", "dst", "optional", "size", "mode", "content")
VARIABLE_NAMES = ("CWD", "HOME", "USER", "UID", "GID", "XDG_RUNTIME_DIR", "PROFILE_DIR")


@dataclass
class Variables:
    """The values of ${...} in profiles."""

    cwd: str
    home: str
    user: str
    uid: int
    gid: int
    xdg_runtime_dir: str | None
    env: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_host(cls, cwd: str | None = None) -> "Variables":
        try:
            cwd = cwd or os.getcwd()
        except OSError as e:
            raise RootsandError(f"cannot read the current directory: {e.strerror}",
                                "cd to a directory that exists") from None
        uid, gid = os.getuid(), os.getgid()
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:  # a uid without a passwd entry (containers, CI) is fine
            entry = None
        home = os.environ.get("HOME") or (entry.pw_dir if entry else "/")
        user = os.environ.get("USER") or (entry.pw_name if entry else str(uid))
        return cls(cwd, home, user, uid, gid, os.environ.get("XDG_RUNTIME_DIR") or None, dict(os.environ))


@dataclass
class Mount:
    type: str  # bind | ro-bind | dev-bind | tmpfs | proc | dev | mqueue | overlay | symlink | dir | file
    dst: str  # absolute, normalised, never "/"
    src: str | None = None  # binds: absolute host path; symlink: the link target
    optional: bool = False  # binds and overlay: the launcher skips the mount when a source is missing
    lower: list[str] = field(default_factory=list)  # overlay
    upper: str = "tmpfs"  # overlay: "tmpfs" or a host directory that keeps the changes
    size: int | None = None  # tmpfs, bytes
    mode: int | None = None  # tmpfs, dir, file
    content: str = ""  # file


@dataclass
class Profile:
    name: str
    path: str | None
    description: str = ""
    hostname: str = "rootsand"
    chdir: str | None = None
    user: str = "root"
    namespaces: list[str] = field(default_factory=lambda: list(DEFAULT_NAMESPACES))
    idmap: str = "auto"
    time_offsets: dict[str, int] = field(default_factory=dict)
    net_mode: str = "none"
    allow_host_loopback: bool = False
    publish: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    env_clear: bool = True
    env_keep: list[str] = field(default_factory=lambda: list(DEFAULT_ENV_KEEP))
    env_set: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    capabilities: list[str] | str = field(default_factory=list)
    no_new_privs: bool = True
    seccomp: str = "default"
    new_session: bool = True
    nested_userns: bool = False
    setuid_bits: bool = False
    socket_families: list[str] = field(default_factory=list)  # AF_VSOCK, AF_KCM, AF_TIPC, AF_ALG: refused unless named
    timeout: float | None = None
    memory: int | None = None
    pids: int | None = None
    cpu: float | None = None
    rlimits: dict[str, int] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- sizes

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


# ---------------------------------------------------------------------------------------------- lookup

def _user_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not base.startswith("/"):  # the XDG spec: a relative value is invalid and ignored
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rootsand", "profiles")


def _builtin_dir() -> str:
    """Where the wheel puts profiles/: beside this file. importlib.resources finds them elsewhere (an
    editable install maps the package to the repository's profiles/), but costs ~15 ms to import."""
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiles")
    if os.path.isfile(os.path.join(beside, "default.toml")):
        return beside
    import importlib.resources

    return str(importlib.resources.files("rootsand.profiles"))


def _names_in(directory: str) -> list[str]:
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    return sorted(e[:-5] for e in entries
                  if e.endswith(".toml") and NAME_RE.fullmatch(e[:-5]) and os.path.isfile(os.path.join(directory, e)))


def _known_names() -> list[str]:
    return sorted(set(_names_in(_user_dir())) | set(_names_in(_builtin_dir())))


def _resolve(value: str, base_dir: str, skip: str | None = None, sibling_files: bool = True) -> str:
    """The file for a profile name or path. `skip` is the extending file: another file of the same name is
    preferred to it, so a user's `default.toml` can extend "default" and get the built-in one.
    `sibling_files`: a bare NAME.toml may be a file in `base_dir` (in `extends`, beside the extending file)."""
    if "\0" in value:
        raise RootsandError(f"invalid profile name {value!r}")
    # On the command line only a value with a "/" is a file: a bare `build.toml` is the profile named build,
    # never a file in the current directory. Sandboxes can write there, and one must not choose the next
    # one's profile (like "." left out of PATH); `./build.toml` says it.
    if "/" in value or (sibling_files and value.endswith(".toml") and os.path.isfile(os.path.join(base_dir, value))):
        path = os.path.abspath(os.path.join(base_dir, value))
        if not os.path.exists(path):
            raise RootsandError(f"no profile file {path}")
        return path
    name = value[:-5] if value.endswith(".toml") else value
    if not NAME_RE.fullmatch(name):
        raise RootsandError(f"invalid profile name {value!r}: letters, digits, '_', '.' and '-'",
                            "or give a path to a TOML file (a value with a '/')")
    found = [path for path in (os.path.join(d, name + ".toml") for d in (_user_dir(), _builtin_dir()))
             if os.path.isfile(path)]
    others = [path for path in found if not (skip and os.path.realpath(path) == os.path.realpath(skip))]
    if others or found:
        return (others or found)[0]  # only the extending file itself: the caller reports the cycle
    raise RootsandError(f"no profile named {name!r}",
                        f"known profiles: {', '.join(_known_names())}; or give a path to a TOML file")


def resolve_path(name_or_path: str) -> str:
    """The profile file for a `--profile` value (see CONTRACT.md, "Profiles")."""
    try:
        cwd = os.getcwd()
    except OSError as e:
        raise RootsandError(f"cannot read the current directory: {e.strerror}",
                            "cd to a directory that exists") from None
    return _resolve(name_or_path, cwd, sibling_files=False)


def list_profiles() -> list[tuple[str, str, str]]:
    """(name, description, origin) for every profile; a user profile shadows a built-in of the same name."""
    found = {name: os.path.join(_builtin_dir(), name + ".toml") for name in _names_in(_builtin_dir())}
    user = {name: os.path.join(_user_dir(), name + ".toml") for name in _names_in(_user_dir())}
    found.update(user)
    out = []
    for name in sorted(found):
        path = found[name]
        try:
            # Only the file's own description: listing must not fail on one broken or slow profile.
            description = _read(path).data.get("description", "")
            if not isinstance(description, str):
                description = ""
        except RootsandError as e:
            description = f"(broken: {e.message})"
        out.append((name, description, path if name in user else "built-in"))
    return out


# ---------------------------------------------------------------------------------------------- one file

_HEADER_RE = re.compile(r"\s*\[(\[?)([^\[\]]+)\]\]?\s*(?:#.*)?$")


@dataclass
class _Section:
    name: str  # "" for the keys before the first header
    array: bool
    line: int | None  # 1-based line of the header
    body: list[tuple[int, str]]  # (line number, text)


def _scan(text: str) -> list[_Section]:
    """Table headers and their lines, to point errors at a line (a heuristic, good for hand-written files)."""
    sections = [_Section("", False, None, [])]
    for number, line in enumerate(text.split("\n"), 1):
        m = _HEADER_RE.match(line)
        if m:
            name = ".".join(part.strip().strip("\"'") for part in m.group(2).split("."))
            sections.append(_Section(name, bool(m.group(1)), number, []))
        else:
            sections[-1].body.append((number, line))
    return sections


def _key_text(parts: tuple) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if re.fullmatch(r"[A-Za-z0-9_-]+", part) else _toml_string(part)
            out += f".{text}" if out else text
    return out


def _type_name(value) -> str:
    names = {"bool": "boolean", "int": "integer", "float": "float", "str": "string", "list": "array",
             "dict": "table", "datetime": "date-time", "date": "date", "time": "time"}
    return names.get(type(value).__name__, type(value).__name__)


class _File:
    """One profile file: its parsed document, and how to point at a key in it."""

    def __init__(self, path: str, text: str, data: dict):
        self.path = path
        self.dir = os.path.dirname(path)
        self.data = data
        self.sections = _scan(text)

    def line_of(self, parts: tuple) -> int | None:
        def find(section: _Section, rest: tuple) -> int | None:
            if rest:
                key = re.escape(str(rest[0]))
                pattern = re.compile(rf"\s*(?:{key}|\"{key}\"|'{key}')\s*[=.]")
                for number, line in section.body:
                    if pattern.match(line):
                        return number
            return section.line

        if len(parts) >= 2 and isinstance(parts[1], int):  # mount[N]...: the N-th [[mount]]
            tables = [s for s in self.sections if s.array and s.name == parts[0]]
            if parts[1] <= len(tables):
                return find(tables[parts[1] - 1], parts[2:])
            return find(self.sections[0], parts[:1])  # written as an inline array
        for cut in range(len(parts), 0, -1):
            name = ".".join(str(p) for p in parts[:cut])
            for section in self.sections:
                if section.name == name and not section.array:
                    return find(section, parts[cut:])
        return find(self.sections[0], parts)

    def fail(self, parts: tuple, message: str, hint: str | None = None) -> NoReturn:
        line = self.line_of(parts)
        where = f"profile {self.path}, line {line}" if line else f"profile {self.path}"
        # One line, whatever a path or value in the message holds.
        raise RootsandError(f"{where}: {_key_text(parts)}: {message}".replace("\n", "\\n"), hint)


def _read(path: str) -> _File:
    text, data = tomlfile.read(path, "profile")
    return _File(path, text, data)


# ---------------------------------------------------------------------------------------------- variables

_DOLLAR_RE = re.compile(r"\$(?:(\$)|\{([^{}]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\{))")
_VARIABLE_HINT = ("variables: " + ", ".join("${%s}" % n for n in VARIABLE_NAMES) + ", ${env:NAME}; "
                  "write $$ for a literal $")


class _Expander:
    def __init__(self, file: _File, variables: Variables):
        self.file = file
        self.variables = variables

    def __call__(self, parts: tuple, text: str) -> str:
        def one(m: re.Match) -> str:
            if m.group(1):
                return "$"
            if m.group(3) or m.group(4):
                bad = "$" + (m.group(3) or "{")
                self.file.fail(parts, f"{bad!r} is not a variable: write ${{NAME}}", _VARIABLE_HINT)
            return self.value(parts, m.group(2))

        return _DOLLAR_RE.sub(one, text)

    def value(self, parts: tuple, name: str) -> str:
        v = self.variables
        if name.startswith("env:"):
            if name[4:] not in v.env:
                self.file.fail(parts, f"${{{name}}}: {name[4:]} is not set in the environment")
            return v.env[name[4:]]
        if name == "XDG_RUNTIME_DIR" and not v.xdg_runtime_dir:
            self.file.fail(parts, "${XDG_RUNTIME_DIR}: XDG_RUNTIME_DIR is not set")
        values = {"CWD": v.cwd, "HOME": v.home, "USER": v.user, "UID": str(v.uid), "GID": str(v.gid),
                  "XDG_RUNTIME_DIR": v.xdg_runtime_dir, "PROFILE_DIR": self.file.dir}
        if name not in values:
            self.file.fail(parts, f"unknown variable ${{{name}}}", _VARIABLE_HINT)
        return values[name]


# ---------------------------------------------------------------------------------------------- checks

class _Checker:
    """Type checks and conversions of one file's values; each failure points at the key's line."""

    def __init__(self, file: _File, variables: Variables):
        self.file = file
        self.fail = file.fail
        self.expand = _Expander(file, variables)

    def string(self, key, value, expand=True) -> str:
        if not isinstance(value, str):
            self.fail(key, f"expected a string, got {_type_name(value)}")
        if "\0" in value:
            self.fail(key, "contains a NUL character")
        return self.expand(key, value) if expand else value

    def boolean(self, key, value) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {_type_name(value)}")
        return value

    def integer(self, key, value, low=0, high=INT_MAX) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {_type_name(value)}")
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range ({low} to {high})")
        return value

    def strings(self, key, value, expand=True) -> list[str]:
        if not isinstance(value, list):
            self.fail(key, f"expected an array of strings, got {_type_name(value)}")
        for item in value:
            if not isinstance(item, str):
                self.fail(key, f"expected an array of strings, got an item of type {_type_name(item)}")
        return [self.string(key, item, expand) for item in value]

    def table(self, key, value) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {_type_name(value)}")
        return value

    def path(self, key, value) -> str:
        text = self.string(key, value)
        if not text.startswith("/"):
            self.fail(key, f"expected an absolute path, got {text!r}")
        path = os.path.normpath(text)
        return "/" + path.lstrip("/")  # normpath keeps a leading "//"

    def size(self, key, value, what) -> int:
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            self.fail(key, f"expected a size like 64M or a number of bytes, got {_type_name(value)}")
        if isinstance(value, str):
            value = self.string(key, value)
        return self.parsed(key, parse_size, value, what)

    def parsed(self, key, parse, *args):
        """parse(*args), with any error it raises pointed at this key's file and line."""
        try:
            return parse(*args)
        except RootsandError as e:
            self.fail(key, e.message)

    def mode(self, key, value) -> int:
        if isinstance(value, str):
            text = self.string(key, value)
            if not re.fullmatch(r"(?:0o)?[0-7]{1,5}", text):
                self.fail(key, f"invalid mode {text!r}: expected octal digits like \"0755\"")
            value = int(text.removeprefix("0o"), 8)
        else:  # an integer: 755 would be read as decimal, which nobody means; TOML cannot tell 0o755 apart
            self.fail(key, f"expected a mode as a string like \"0755\", got {_type_name(value)}")
        if not 0 <= value <= 0o7777:
            self.fail(key, f"invalid mode {value:#o}: must be 0 to 07777")
        return value


# Each section key: the Profile attribute it sets, and the check that turns the TOML value into it.
def _hostname(c: _Checker, key, value):
    return c.parsed(key, validate_hostname, c.string(key, value))


def _user(c: _Checker, key, value):
    text = c.string(key, value)
    c.parsed(key, parse_user, text)
    return text


def _namespaces(c: _Checker, key, value):
    names = c.strings(key, value)
    for name in names:
        if name not in ALL_NAMESPACES:
            c.fail(key, f"unknown namespace {name!r}", f"namespaces: {', '.join(ALL_NAMESPACES)}")
        if names.count(name) > 1:
            c.fail(key, f"namespace {name!r} is listed twice")
    if "user" not in names:
        c.fail(key, "\"user\" must be in the list: rootsand is rootless and needs the user namespace first")
    return names


def _choice(*choices):
    def check(c: _Checker, key, value):
        text = c.string(key, value)
        if text not in choices:
            c.fail(key, f"expected one of {', '.join(choices)}, got {text!r}")
        return text
    return check


def _time_offsets(c: _Checker, key, value):
    table = c.table(key, value)
    for name, offset in table.items():
        if name not in ("boottime", "monotonic"):
            c.fail(key + (name,), "unknown key", "time_offsets takes boottime and monotonic (seconds)")
        c.integer(key + (name,), offset, -(2**62), 2**62)
    return dict(table)


def _publish(c: _Checker, key, value):
    from rootsand.network import parse_publish

    out = c.strings(key, value)
    for item in out:
        c.parsed(key, parse_publish, item)
    return out


def _dns(c: _Checker, key, value):
    import ipaddress

    out = []
    for item in c.strings(key, value):
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            c.fail(key, f"invalid DNS server {item!r}: expected an IP address")
    return out


def _env_keep(c: _Checker, key, value):
    out = c.strings(key, value)
    for item in out:
        if not item or "=" in item:
            c.fail(key, f"invalid variable name or pattern {item!r}")
    return out


def _env_set(c: _Checker, key, value):
    table = c.table(key, value)
    out = {}
    for name, text in table.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            c.fail(key + (name,), "invalid environment variable name")
        out[name] = c.string(key + (name,), text)
    return out


def _capabilities(c: _Checker, key, value):
    if isinstance(value, str):
        if c.string(key, value) != "all":
            c.fail(key, f"expected an array of capability names or \"all\", got {value!r}")
        return "all"
    out = []
    for name in c.strings(key, value):
        full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        if full not in CAPABILITIES:
            c.fail(key, f"unknown capability {name!r}", "names like CAP_CHOWN or chown; see capabilities(7)")
        if full not in out:
            out.append(full)
    return out


def _socket_families(c: _Checker, key, value):
    out = []
    for name in c.strings(key, value):
        if name not in SOCKET_FAMILIES:
            c.fail(key, f"unknown socket family {name!r}",
                   f"socket_families: {', '.join(SOCKET_FAMILIES)} (the others are not refused)")
        if name not in out:
            out.append(name)
    return out


def _seccomp(c: _Checker, key, value):
    text = c.string(key, value)
    if text in ("default", "none"):
        return text
    if not text:
        c.fail(key, "expected default, none or the path of a rule file")
    path = os.path.normpath(os.path.join(c.file.dir, text))  # relative: next to the profile
    if not os.path.isfile(path):
        c.fail(key, f"seccomp rule file {path} does not exist", "seccomp takes default, none or a file path")
    return path


def _timeout(c: _Checker, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        c.fail(key, f"expected seconds or a duration like \"10m\", got {_type_name(value)}")
    if isinstance(value, int) and value > 10**9:  # float() of a huge int overflows
        c.fail(key, f"{value} is too large")
    if isinstance(value, str):
        value = c.string(key, value)
    return c.parsed(key, parse_duration, value, "timeout")


def _memory(c: _Checker, key, value):
    size = c.size(key, value, "memory")
    if size == 0:
        c.fail(key, "must be more than 0")
    return size


def _pids(c: _Checker, key, value):
    return c.integer(key, value, 1, 2**31 - 1)


def _cpu(c: _Checker, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        c.fail(key, f"expected a number of cores, got {_type_name(value)}")
    if not (0 < value <= 65536):  # also refuses nan and inf
        c.fail(key, f"{value} is out of range (more than 0, at most 65536 cores)")
    return float(value)


def _rlimits(c: _Checker, key, value):
    out = {}
    for name, limit in c.table(key, value).items():
        at = key + (name,)
        if name not in RLIMITS:
            c.fail(at, "unknown key", f"rlimits: {', '.join(RLIMITS)}")
        if limit == "unlimited":
            out[name] = -1
        elif name in SIZE_RLIMITS:
            out[name] = c.size(at, limit, f"rlimit {name}")
        elif isinstance(limit, str):
            c.fail(at, f"expected an integer or \"unlimited\", got {limit!r}")
        else:
            out[name] = c.integer(at, limit)
    return out


def _just(method):
    return lambda c, key, value: getattr(c, method)(key, value)


SCHEMA: dict[str, dict[str, tuple[str, Callable]]] = {
    "sandbox": {
        "hostname": ("hostname", _hostname),
        "chdir": ("chdir", _just("path")),
        "user": ("user", _user),
        "namespaces": ("namespaces", _namespaces),
        "idmap": ("idmap", _choice("auto", "single")),
        "time_offsets": ("time_offsets", _time_offsets),
    },
    "network": {
        "mode": ("net_mode", _choice("none", "slirp", "host")),
        "allow_host_loopback": ("allow_host_loopback", _just("boolean")),
        "publish": ("publish", _publish),
        "dns": ("dns", _dns),
    },
    "env": {
        "clear": ("env_clear", _just("boolean")),
        "keep": ("env_keep", _env_keep),
        "set": ("env_set", _env_set),
    },
    "security": {
        "capabilities": ("capabilities", _capabilities),
        "no_new_privs": ("no_new_privs", _just("boolean")),
        "seccomp": ("seccomp", _seccomp),
        "new_session": ("new_session", _just("boolean")),
        "nested_userns": ("nested_userns", _just("boolean")),
        "setuid_bits": ("setuid_bits", _just("boolean")),
        "socket_families": ("socket_families", _socket_families),
    },
    "limits": {
        "timeout": ("timeout", _timeout),
        "memory": ("memory", _memory),
        "pids": ("pids", _pids),
        "cpu": ("cpu", _cpu),
        "rlimits": ("rlimits", _rlimits),
    },
}
TOP_KEYS = ("description", "extends", *SCHEMA, "mount")
MERGED_TABLES = ("time_offsets", "env_set", "rlimits")  # inline tables that merge key by key under extends


def _mount(c: _Checker, key: tuple, value) -> Mount | None:
    table = c.table(key, value)
    if "type" not in table:
        c.fail(key, "missing key \"type\"", f"mount types: {', '.join(MOUNT_KEYS)}")
    kind = c.string(key + ("type",), table["type"])
    if kind not in MOUNT_KEYS:
        c.fail(key + ("type",), f"unknown mount type {kind!r}", f"mount types: {', '.join(MOUNT_KEYS)}")
    allowed = ("type", "dst", *MOUNT_KEYS[kind])
    for name in table:
        if name not in allowed:
            problem = f"does not apply to {kind} mounts" if name in ALL_MOUNT_KEYS else "unknown key"
            c.fail(key + (name,), problem, f"{kind} mounts take {', '.join(allowed)}")
    required = ["dst"] + (["src"] if kind in BIND_TYPES or kind == "symlink" else []) + (
        ["lower"] if kind == "overlay" else [])
    for name in required:
        if name not in table:
            c.fail(key, f"missing key \"{name}\" ({kind} mounts need it)")

    dst = c.path(key + ("dst",), table["dst"])
    if dst == "/":
        if table["dst"] in ("${CWD}", "${HOME}"):
            return None  # run from / (or HOME=/): the whole host is not made writable or hidden; skip it
        c.fail(key + ("dst",), "must not be / (the root is rootsand's own tmpfs; mount below it)")
    m = Mount(kind, dst)
    if "optional" in table:
        m.optional = c.boolean(key + ("optional",), table["optional"])
    if kind in BIND_TYPES:
        m.src = c.path(key + ("src",), table["src"])
        if not m.optional and not os.path.exists(m.src):
            c.fail(key + ("src",), f"bind source {m.src} does not exist",
                   "create it, or add optional = true to skip this mount when it is missing")
    elif kind == "symlink":
        m.src = c.string(key + ("src",), table["src"])
        if not m.src:
            c.fail(key + ("src",), "the link target must not be empty")
    elif kind == "overlay":
        lower = table["lower"]
        if isinstance(lower, list) and not lower:
            c.fail(key + ("lower",), "needs at least one directory")
        m.lower = [c.path(key + ("lower",), item) for item in c.strings(key + ("lower",), lower, expand=False)]
        for path in m.lower:
            if not m.optional and not os.path.isdir(path):
                c.fail(key + ("lower",), f"overlay lower directory {path} does not exist",
                       "create it, or add optional = true to skip this mount when it is missing")
        if "upper" in table:
            upper = c.string(key + ("upper",), table["upper"])
            if upper != "tmpfs":
                upper = c.path(key + ("upper",), upper)
                if not (os.path.isdir(upper) or os.path.isdir(os.path.dirname(upper))):
                    c.fail(key + ("upper",), f"overlay upper directory {upper}: neither it nor its parent exists")
            m.upper = upper
    if "size" in table:
        m.size = c.size(key + ("size",), table["size"], "tmpfs size")
        if m.size == 0:
            c.fail(key + ("size",), "must be more than 0 (leave it out for the kernel's default)")
    if "mode" in table:
        m.mode = c.mode(key + ("mode",), table["mode"])
    if "content" in table:
        m.content = c.string(key + ("content",), table["content"])
    return m


@dataclass
class _Layer:
    """What one file sets: Profile attributes, where each was set (for later errors), its mounts."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, tuple[_File, tuple]] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)


def _check_file(file: _File, variables: Variables) -> tuple[_Layer, str | None]:
    c = _Checker(file, variables)
    layer = _Layer()
    doc = file.data
    for name in doc:
        if name not in TOP_KEYS:
            c.fail((name,), "unknown key", f"top-level keys: {', '.join(TOP_KEYS)}")
    if "description" in doc:
        layer.values["description"] = c.string(("description",), doc["description"], expand=False)
    extends = c.string(("extends",), doc["extends"]) if "extends" in doc else None
    for section, fields in SCHEMA.items():
        if section not in doc:
            continue
        for name, value in c.table((section,), doc[section]).items():
            if name not in fields:
                c.fail((section, name), "unknown key", f"keys of [{section}]: {', '.join(fields)}")
            attr, check = fields[name]
            layer.values[attr] = check(c, (section, name), value)
            layer.origins[attr] = (file, (section, name))
    if "mount" in doc:
        mounts = doc["mount"]
        if not isinstance(mounts, list):
            c.fail(("mount",), f"expected an array of tables ([[mount]]), got {_type_name(mounts)}")
        layer.mounts = [m for i, raw in enumerate(mounts, 1) if (m := _mount(c, ("mount", i), raw)) is not None]
    return layer, extends


def _load_layers(path: str, variables: Variables, chain: list[str]) -> _Layer:
    """This file's settings on top of those of the chain of files it extends."""
    file = _read(path)
    layer, extends = _check_file(file, variables)
    if extends is None:
        return layer
    if len(chain) >= MAX_EXTENDS_DEPTH:
        file.fail(("extends",), f"extends goes more than {MAX_EXTENDS_DEPTH} profiles deep")
    try:
        parent_path = _resolve(extends, file.dir, skip=path)
    except RootsandError as e:
        file.fail(("extends",), e.message, e.hint)
    seen = [os.path.realpath(p) for p in chain + [path]]
    if os.path.realpath(parent_path) in seen:
        file.fail(("extends",), "extends cycle: " + " -> ".join(chain + [path, parent_path]))
    base = _load_layers(parent_path, variables, chain + [path])
    # Merge: the child's keys win, its inline tables merge key by key, its mounts come after the parent's.
    for attr, value in layer.values.items():
        if attr in MERGED_TABLES and attr in base.values:
            value = {**base.values[attr], **value}
        base.values[attr] = value
    base.origins.update(layer.origins)
    base.mounts.extend(layer.mounts)
    return base


def load(name_or_path: str, variables: Variables) -> Profile:
    """The fully resolved Profile for a `--profile` value; RootsandError for anything wrong with it."""
    path = resolve_path(name_or_path)
    layer = _load_layers(path, variables, [])
    profile = Profile(name=name_or_path, path=path, mounts=layer.mounts, **layer.values)
    # Checks across keys, which may come from different files: report where the later key was written.
    if profile.time_offsets and "time" not in profile.namespaces:
        file, key = layer.origins["time_offsets"]
        file.fail(key, "needs \"time\" in sandbox.namespaces")
    if profile.publish and profile.net_mode != "slirp":
        file, key = layer.origins["publish"]
        file.fail(key, f"ports can be published in slirp mode only (network.mode is {profile.net_mode!r})")
    return profile


# ---------------------------------------------------------------------------------------------- TOML out

def _toml_string(text: str) -> str:
    escapes = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
    out = []
    for ch in text:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _toml_string(key)


def toml_value(value) -> str:
    """One value in TOML syntax (arrays and inline tables included)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dump_toml(doc: dict, header: str = "") -> str:
    """A document of plain values as TOML: scalars first, then [tables], then [[arrays of tables]]."""
    lines = [header] if header else []

    def is_table_array(v):
        return isinstance(v, list) and v and all(isinstance(x, dict) for x in v)

    for key, value in doc.items():
        if not isinstance(value, dict) and not is_table_array(value):
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for key, value in doc.items():
        if isinstance(value, dict):
            lines += ["", f"[{_toml_key(key)}]"] + [f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items()]
    for key, value in doc.items():
        if is_table_array(value):
            for item in value:
                lines += ["", f"[[{_toml_key(key)}]]"] + [f"{_toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def _dollars(value):
    """Escape $ as $$ so a value read back is not expanded a second time."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_dollars(v) for v in value]
    if isinstance(value, dict):
        return {k: _dollars(v) for k, v in value.items()}
    return value


def to_toml(profile: Profile) -> str:
    """The resolved profile as a TOML document that load() accepts back unchanged."""
    doc: dict[str, Any] = {"description": profile.description}
    for section, fields in SCHEMA.items():
        table = {}
        for key, (attr, _check) in fields.items():
            value = getattr(profile, attr)
            if value is None:
                continue
            if attr == "rlimits":  # -1 is how "unlimited" is kept; negative numbers are refused
                value = {k: "unlimited" if v == -1 else v for k, v in value.items()}
            table[key] = _dollars(value)
        doc[section] = table
    mounts = []
    for m in profile.mounts:
        keys = ("type", "dst", *MOUNT_KEYS[m.type])
        item = {k: getattr(m, k) for k in ALL_MOUNT_KEYS if k in keys and getattr(m, k) is not None}
        if m.mode is not None:
            item["mode"] = f"{m.mode:04o}"
        mounts.append(_dollars(item))
    doc["mount"] = mounts
    origin = f" ({profile.path})" if profile.path else ""
    header = re.sub(r"[\x00-\x1f\x7f]", "?", f"# profile {profile.name}{origin}")  # a comment is one line
    return dump_toml(doc, header + ", resolved: extends, variables and defaults applied")
