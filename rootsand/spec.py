"""What a sandbox is made of, as plain data: the CLI and the profiles build it, the launcher carries it out.

Pure functions only: no system calls, so every rule here is unit-tested without namespaces.
"""

import fnmatch
import re
from dataclasses import dataclass, field

from rootsand.errors import RootsandError

ALL_NAMESPACES = ("user", "pid", "mount", "uts", "ipc", "net", "cgroup", "time")
DEFAULT_NAMESPACES = ("user", "pid", "mount", "uts", "ipc", "net", "cgroup")
DEFAULT_ENV_KEEP = ("PATH", "TERM", "LANG", "LC_*", "HOME", "USER")
FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class User:
    """Who the command runs as inside: root (0), keep-id (your own ids) or explicit ids."""

    mode: str  # "root" | "keep-id" | "ids"
    uid: int = 0
    gid: int = 0


@dataclass
class SandboxSpec:
    command: list[str]
    user: User = field(default_factory=lambda: User("root"))
    hostname: str = "rootsand"
    chdir: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    name: str | None = None
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    idmap: str = "auto"  # auto | single
    json_status: str | None = None
    verbose: bool = False
    debug: bool = False
    # Filled in by the launcher once the id maps are known: the ids the command runs as inside.
    run_ids: tuple[int, int] = (0, 0)


def parse_user(text: str) -> User:
    """`root`, `keep-id`, `UID` or `UID:GID` (numbers only: names would have to come from the sandbox)."""
    if text == "root":
        return User("root")
    if text == "keep-id":
        return User("keep-id")
    m = re.fullmatch(r"(\d{1,10})(?::(\d{1,10}))?", text)
    if not m:
        raise RootsandError(f"invalid user {text!r}: expected root, keep-id, UID or UID:GID")
    uid = int(m.group(1))
    gid = int(m.group(2)) if m.group(2) is not None else uid
    if uid >= 2**32 - 1 or gid >= 2**32 - 1:
        raise RootsandError(f"invalid user {text!r}: ids must be below 4294967295")
    return User("ids", uid, gid)


_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: str | int | float, what: str = "timeout") -> float:
    """Seconds from `90`, `1.5`, `30s`, `10m`, `2h` or `1d`."""
    if isinstance(value, bool):
        raise RootsandError(f"invalid {what} {value!r}: expected seconds or a number with s, m, h or d")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if not m:
            raise RootsandError(f"invalid {what} {value!r}: expected seconds or a number with s, m, h or d")
        seconds = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    if not 0 < seconds < 10**9:
        raise RootsandError(f"invalid {what} {value!r}: must be more than 0")
    return seconds


def parse_env_assignment(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise RootsandError(f"invalid environment assignment {text!r}: expected KEY=VALUE")
    return key, value


def build_env(host_env: dict[str, str], clear: bool = True, keep: tuple[str, ...] = DEFAULT_ENV_KEEP,
              assignments: dict[str, str] | None = None) -> dict[str, str]:
    """The command's environment: empty (or the caller's) plus the kept names (globs allowed), then `set`."""
    if clear:
        env = {k: v for k, v in host_env.items() if any(fnmatch.fnmatchcase(k, pat) for pat in keep)}
    else:
        env = dict(host_env)
    env.setdefault("PATH", FALLBACK_PATH)
    env.update(assignments or {})
    return env


def validate_hostname(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,62})", name):
        raise RootsandError(f"invalid hostname {name!r}: letters, digits, '.' and '-', at most 64")
    return name


def validate_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise RootsandError(f"invalid sandbox name {name!r}: letters, digits, '_', '.' and '-', at most 64")
    return name
