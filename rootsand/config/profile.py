"""Profiles: TOML files -> a validated Profile, with `extends`, ${VARIABLES} and errors naming file, line and key.

Pure Python: the only contact with the host is reading profile files and checking that paths exist.
Every problem in a profile becomes one RootsandError; nothing else may escape load(), whatever the file holds.
"""

from __future__ import annotations

import os
import pwd
import re
if False:  # for the type checkers only: importing typing costs start-up time on every run
    from typing import Any, Callable, NoReturn

from rootsand.config import lookup, tomlfile
from rootsand.errors import RootsandError
from rootsand.config.model import (ALL_MOUNT_KEYS, ALL_NAMESPACES, BIND_TYPES, CAPABILITIES, DEFAULT_ENV_KEEP,
                            DEFAULT_NAMESPACES, INT_MAX, MOUNT_KEYS, RLIMITS, SIZE_RLIMITS, Mount, Record,
                            User, parse_capability, parse_cpus, parse_duration, parse_publish, parse_size,
                            parse_user, validate_hostname)
from rootsand.config.netmodes import NET_CHOICES, entry, modes_with, one_of
from rootsand.config.tomlfile import dump_toml, key_text, toml_value, type_name
from rootsand.security.seccomp.rules import SOCKET_FAMILIES

__all__ = ["CAPABILITIES", "Mount", "Profile", "Variables", "dump_toml", "list_profiles", "load", "parse_size",
           "resolve_path", "to_toml", "toml_value"]

MAX_EXTENDS_DEPTH = 16
VARIABLE_NAMES = ("CWD", "HOME", "USER", "UID", "GID", "XDG_RUNTIME_DIR", "PROFILE_DIR")
list_profiles = lookup.list_profiles
resolve_path = lookup.resolve_path


class Variables(Record):
    """The values of ${...} in profiles."""

    __slots__ = ("cwd", "home", "user", "uid", "gid", "xdg_runtime_dir", "env")
    FIELDS = {"cwd": "/", "home": "/", "user": "", "uid": 0, "gid": 0, "xdg_runtime_dir": None, "env": dict}

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


class Profile(Record):
    """A profile with extends, variables and defaults applied; every value checked."""

    FIELDS = {
        "name": "", "path": None, "description": "",
        "hostname": "rootsand", "chdir": None, "parent_products": list, "user": User, "namespaces": lambda: list(DEFAULT_NAMESPACES),
        "idmap": "auto", "time_offsets": dict, "git": "none",
        "net_mode": "none", "allow_host_loopback": False, "publish": list, "dns": list,
        "allow_hosts": list, "deny_hosts": list, "header_timeout": 10.0,
        "env_clear": True, "env_keep": lambda: list(DEFAULT_ENV_KEEP), "env_set": dict,
        "mounts": list,
        "capabilities": list, "no_new_privs": True, "seccomp": "default", "new_session": True,
        "nested_userns": False, "setuid_bits": False, "socket_families": list, "compat_syscalls": True,
        "landlock": "scope-only",
        "protect": list, "placeholders": False, "home_writable": list, "hide": list,
        "timeout": None, "memory": None, "pids": None, "cpu": None, "rlimits": dict,
    }
    __slots__ = tuple(FIELDS)


# ---------------------------------------------------------------------------------------------- one file

class _File:
    """One profile file: its parsed document, and how to point at a key in it."""

    def __init__(self, path: str, text: str, data: dict):
        self.path = path
        self.dir = os.path.dirname(path)
        self.data = data
        self.text = text
        self._locator = None  # made when a line is asked for: most runs never need one

    def line_of(self, parts: tuple) -> int | None:
        if self._locator is None:
            self._locator = tomlfile.Locator(self.text)
        return self._locator.line_of(parts)

    def origin(self, parts: tuple) -> str:
        line = self.line_of(parts)
        return f"profile {self.path}, line {line}" if line else f"profile {self.path}"

    def fail(self, parts: tuple, message: str, hint: str | None = None) -> NoReturn:
        # One line, whatever a path or value in the message holds.
        raise RootsandError(f"{self.origin(parts)}: {key_text(parts)}: {message}".replace("\n", "\\n"), hint)


def _read(path: str) -> _File:
    text, data = tomlfile.read(path, "profile", known=_builtin_parse(path))
    return _File(path, text, data)


def _builtin_parse(path: str) -> tuple | None:
    """The shipped parse of a built-in profile, or None. tomlfile.read uses it only if the file's text is
    still exactly the one parsed, so an edited installed profile is parsed afresh."""
    if os.path.dirname(path) != lookup.builtin_dir():
        return None
    try:
        from rootsand.profiles import parsed
    except ImportError:  # a package built without it: parse the files
        return None
    return parsed.PARSED.get(os.path.basename(path))


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
            self.fail(key, f"expected a string, got {type_name(value)}")
        if "\0" in value:
            self.fail(key, "contains a NUL character")
        return self.expand(key, value) if expand else value

    def boolean(self, key, value) -> bool:
        if not isinstance(value, bool):
            self.fail(key, f"expected true or false, got {type_name(value)}")
        return value

    def integer(self, key, value, low=0, high=INT_MAX) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, f"expected an integer, got {type_name(value)}")
        if not low <= value <= high:
            self.fail(key, f"{value} is out of range ({low} to {high})")
        return value

    def strings(self, key, value, expand=True) -> list[str]:
        if not isinstance(value, list):
            self.fail(key, f"expected an array of strings, got {type_name(value)}")
        for item in value:
            if not isinstance(item, str):
                self.fail(key, f"expected an array of strings, got an item of type {type_name(item)}")
        return [self.string(key, item, expand) for item in value]

    def table(self, key, value) -> dict:
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, got {type_name(value)}")
        return value

    def path(self, key, value) -> str:
        text = self.string(key, value)
        if not text.startswith("/"):
            self.fail(key, f"expected an absolute path, got {text!r}")
        path = os.path.normpath(text)
        return "/" + path.lstrip("/")  # normpath keeps a leading "//"

    def size(self, key, value, what) -> int:
        if not isinstance(value, (int, str)) or isinstance(value, bool):
            self.fail(key, f"expected a size like 64M or a number of bytes, got {type_name(value)}")
        if isinstance(value, str):
            value = self.string(key, value)
        return self.parsed(key, parse_size, value, what)

    def parsed(self, key, parse, *args):
        """parse(*args), with any error it raises pointed at this key's file and line."""
        try:
            return parse(*args)
        except RootsandError as e:
            self.fail(key, e.message, e.hint)

    def mode(self, key, value) -> int:
        if isinstance(value, str):
            text = self.string(key, value)
            if not re.fullmatch(r"(?:0o)?[0-7]{1,5}", text):
                self.fail(key, f"invalid mode {text!r}: expected octal digits like \"0755\"")
            value = int(text.removeprefix("0o"), 8)
        else:  # an integer: 755 would be read as decimal, which nobody means; TOML cannot tell 0o755 apart
            self.fail(key, f"expected a mode as a string like \"0755\", got {type_name(value)}")
        if not 0 <= value <= 0o7777:
            self.fail(key, f"invalid mode {value:#o}: must be 0 to 07777")
        return value


# Each section key: the Profile attribute it sets, and the check that turns the TOML value into it.
def _hostname(c: _Checker, key, value):
    return c.parsed(key, validate_hostname, c.string(key, value))


def _user(c: _Checker, key, value):
    return c.parsed(key, parse_user, c.string(key, value))


def _namespaces(c: _Checker, key, value):
    names = c.strings(key, value)
    for name in names:
        if name not in ALL_NAMESPACES:
            c.fail(key, f"unknown namespace {name!r}", f"namespaces: {', '.join(ALL_NAMESPACES)}")
        if names.count(name) > 1:
            c.fail(key, f"namespace {name!r} is listed twice")
    if "user" not in names:
        c.fail(key, "\"user\" must be in the list: rootsand is rootless and needs the user namespace first")
    for needed in ("mount", "pid"):
        if needed not in names:
            c.fail(key, f"\"{needed}\" must be in the list: rootsand builds every sandbox on its own user, mount "
                        "and PID namespaces")
    return names


def _no_new_privs(c: _Checker, key, value):
    if not c.boolean(key, value):
        c.fail(key, "false is not supported: rootsand always sets no_new_privs, so setuid programs inside gain "
                    "nothing")
    return True


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
    return [c.parsed(key, parse_publish, item) for item in c.strings(key, value)]


def _dns(c: _Checker, key, value):
    import ipaddress

    out = []
    for item in c.strings(key, value):
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            c.fail(key, f"invalid DNS server {item!r}: expected an IP address")
    return out


def _hosts(what: str):
    def check(c: _Checker, key, value):
        from rootsand.net import allowlist

        return [c.parsed(key, allowlist.parse_entry, text, what).text for text in c.strings(key, value)]
    return check


def _header_timeout(c: _Checker, key, value):
    return _duration(c, key, value, "header_timeout")


def _protect(c: _Checker, key, value):
    from rootsand.config.model import parse_protect_entry

    return [c.parsed(key, parse_protect_entry, text) for text in c.strings(key, value, expand=False)]


def _hide(c: _Checker, key, value):
    from rootsand.config.model import parse_hide_entry

    return list(dict.fromkeys(c.parsed(key, parse_hide_entry, text) for text in c.strings(key, value, expand=False)))


def _home_writable(c: _Checker, key, value):
    from rootsand.config.model import parse_home_path

    return [c.parsed(key, parse_home_path, text) for text in c.strings(key, value, expand=False)]


def _parent_products(c: _Checker, key, value):
    out = c.strings(key, value, expand=False)
    for item in out:
        if not item or "/" in item or item in (".", ".."):
            c.fail(key, f"invalid file name pattern {item!r}: a pattern of names like \"*.deb\", without /")
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
        full = c.parsed(key, parse_capability, name)
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
    return _duration(c, key, value, "timeout")


def _duration(c: _Checker, key, value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        c.fail(key, f"expected seconds or a duration like \"10m\", got {type_name(value)}")
    if isinstance(value, int) and value > 10**9:  # float() of a huge int overflows
        c.fail(key, f"{value} is too large")
    if isinstance(value, str):
        value = c.string(key, value)
    return c.parsed(key, parse_duration, value, what)


def _memory(c: _Checker, key, value):
    size = c.size(key, value, "memory")
    if size == 0:
        c.fail(key, "must be more than 0")
    return size


def _pids(c: _Checker, key, value):
    return c.integer(key, value, 1, 2**31 - 1)


def _cpu(c: _Checker, key, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        c.fail(key, f"expected a number of cores, got {type_name(value)}")
    return c.parsed(key, parse_cpus, value)


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


def _landlock(c: _Checker, key, value):
    if value is True or value is False:
        return "on" if value else "off"
    if value != "scope-only":
        c.fail(key, f"expected true, false or \"scope-only\", got {value!r}")
    return value


def _just(method):
    return lambda c, key, value: getattr(c, method)(key, value)


SCHEMA: dict[str, dict[str, tuple[str, Callable]]] = {
    "sandbox": {
        "hostname": ("hostname", _hostname),
        "chdir": ("chdir", _just("path")),
        "parent_products": ("parent_products", _parent_products),
        "user": ("user", _user),
        "namespaces": ("namespaces", _namespaces),
        "idmap": ("idmap", _choice("auto", "single", "keep-id")),
        "time_offsets": ("time_offsets", _time_offsets),
        "git": ("git", _choice("none", "read-only")),
    },
    "network": {
        "mode": ("net_mode", _choice(*NET_CHOICES)),
        "allow_host_loopback": ("allow_host_loopback", _just("boolean")),
        "publish": ("publish", _publish),
        "dns": ("dns", _dns),
        "allow": ("allow_hosts", _hosts("allow entry")),
        "deny": ("deny_hosts", _hosts("deny entry")),
        "header_timeout": ("header_timeout", _header_timeout),
    },
    "env": {
        "clear": ("env_clear", _just("boolean")),
        "keep": ("env_keep", _env_keep),
        "set": ("env_set", _env_set),
    },
    "security": {
        "capabilities": ("capabilities", _capabilities),
        "no_new_privs": ("no_new_privs", _no_new_privs),
        "seccomp": ("seccomp", _seccomp),
        "new_session": ("new_session", _just("boolean")),
        "nested_userns": ("nested_userns", _just("boolean")),
        "setuid_bits": ("setuid_bits", _just("boolean")),
        "compat_syscalls": ("compat_syscalls", _just("boolean")),
        "landlock": ("landlock", _landlock),
        "socket_families": ("socket_families", _socket_families),
        "protect": ("protect", _protect),
        "placeholders": ("placeholders", _just("boolean")),
        "home_writable": ("home_writable", _home_writable),
        "hide": ("hide", _hide),
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
    m = {"type": kind, "dst": dst, "origin": c.file.origin(key)}
    if "optional" in table:
        m["optional"] = c.boolean(key + ("optional",), table["optional"])
    if "create" in table:
        m["create"] = _create(c, key + ("create",), table["create"])
    if kind in BIND_TYPES:
        m["src"] = c.path(key + ("src",), table["src"])  # whether it exists: runtime/hostprep.py, on this host
    elif kind == "symlink":
        m["src"] = c.string(key + ("src",), table["src"])
        if not m["src"]:
            c.fail(key + ("src",), "the link target must not be empty")
    elif kind == "overlay":
        lower = table["lower"]
        if isinstance(lower, list) and not lower:
            c.fail(key + ("lower",), "needs at least one directory")
        m["lower"] = [c.path(key + ("lower",), item) for item in c.strings(key + ("lower",), lower, expand=False)]
        if "upper" in table:
            upper = c.string(key + ("upper",), table["upper"])
            if upper != "tmpfs":
                upper = c.path(key + ("upper",), upper)
            m["upper"] = upper
    if "size" in table:
        m["size"] = c.size(key + ("size",), table["size"], "tmpfs size")
        if m["size"] == 0:
            c.fail(key + ("size",), "must be more than 0 (leave it out for the kernel's default)")
    if "mode" in table:
        m["mode"] = c.mode(key + ("mode",), table["mode"])
    if "content" in table:
        m["content"] = c.string(key + ("content",), table["content"])
    return Mount(**m)


def _create(c: _Checker, key: tuple, value) -> bool | str:
    """A bind's `create`: true, false, or the program whose presence on PATH has the directory made."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str):
        c.fail(key, f"expected true, false or a program's name, got {type_name(value)}")
    name = c.string(key, value)
    if not re.fullmatch(r"[A-Za-z0-9_+.-]+", name) or name in (".", ".."):
        c.fail(key, f"expected true, false or a program's name (no path), got {name!r}")
    return name


class _Layer:
    """What one file sets: Profile attributes, where each was set (for later errors), its mounts."""

    def __init__(self):
        self.values: dict[str, Any] = {}
        self.origins: dict[str, tuple[_File, tuple]] = {}
        self.mounts: list[Mount] = []


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
            c.fail(("mount",), f"expected an array of tables ([[mount]]), got {type_name(mounts)}")
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
        parent_path = lookup.resolve(extends, file.dir, skip=path)
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
    if profile.publish and not entry(profile.net_mode).publish:
        file, key = layer.origins["publish"]
        file.fail(key, f"ports can be published in {one_of(modes_with('publish'))} mode only "
                       f"(network.mode is {profile.net_mode!r})")
    return profile


# ---------------------------------------------------------------------------------------------- TOML out

class _Unexpanded(dict):
    """The environment of a template: every ${env:NAME} is set, to its mark."""

    def __contains__(self, name) -> bool:
        return True

    def __missing__(self, name: str) -> str:
        return _mark(f"env:{name}")


def _mark(name: str) -> str:
    return f"\u2063{name}\u2063"  # INVISIBLE SEPARATOR: in no path or value a profile would hold


def template(name_or_path: str) -> str:
    """The profile as to_toml prints it, with ${CWD}, ${HOME}, ${USER}, ${UID}, ${GID}, ${XDG_RUNTIME_DIR}
    and ${env:NAME} left as they were written: a start for a profile of one's own (the resolved one binds
    the directory it was shown in). Each variable loads as a mark that is put back as ${NAME} after."""
    marks = {"CWD": "/" + _mark("CWD"), "HOME": "/" + _mark("HOME"), "XDG_RUNTIME_DIR": "/" + _mark("XDG_RUNTIME_DIR"),
             "USER": _mark("USER"), "UID": _mark("UID"), "GID": _mark("GID")}
    variables = Variables(cwd=marks["CWD"], home=marks["HOME"], user=marks["USER"], uid=marks["UID"],
                          gid=marks["GID"], xdg_runtime_dir=marks["XDG_RUNTIME_DIR"], env=_Unexpanded())
    text = to_toml(load(name_or_path, variables)).replace(", resolved: extends, variables and defaults applied",
                                                          ", a template: extends and defaults applied")
    text = re.sub(_mark("(env:[^\u2063]*)"), lambda m: "${%s}" % m.group(1), text)
    for name, mark in marks.items():
        text = text.replace(mark, "${%s}" % name)
    return text


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
            elif attr == "user":
                value = value.mode if value.mode != "ids" else f"{value.uid}:{value.gid}"
            elif attr == "publish":
                value = [str(forward) for forward in value]
            elif attr == "landlock":  # kept as the mode's name
                value = {"on": True, "off": False}.get(value, value)
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
