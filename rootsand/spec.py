"""What a sandbox is made of, as plain data: the CLI and the profiles build it, the launcher carries it out.

Pure functions only: no system calls, so every rule here is unit-tested without namespaces.
"""

import fnmatch
import os
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
    cwd: str = "/"  # the physical directory rootsand was started in
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    name: str | None = None
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    idmap: str = "auto"  # auto | single
    time_offsets: dict[str, int] = field(default_factory=dict)  # clock -> seconds, with "time" in namespaces
    json_status: str | None = None
    mounts: list = field(default_factory=list)  # profile.Mount ops, applied in order
    rootfs: str | None = None
    net_mode: str = "none"
    allow_host_loopback: bool = False
    publish: list = field(default_factory=list)  # network.PortForward, slirp mode only
    dns: list[str] = field(default_factory=list)
    resolv_conf: str | None = None  # slirp mode: written by the launcher from the host's
    capabilities: int = 0  # the mask the command keeps
    seccomp: str = "default"  # default | none | a rule file
    seccomp_rules: list | None = None  # filled in by the launcher from `seccomp`, read on the host
    nested_userns: bool = False
    new_session: bool = True
    memory: int | None = None
    pids: int | None = None
    cpu: float | None = None
    rlimits: dict[str, int] = field(default_factory=dict)
    setuid_bits: bool = False  # chmod u+s / g+s allowed (fakeroot); else refused by seccomp
    socket_families: tuple[str, ...] = ()  # rarely used families the profile allows (AF_VSOCK, AF_ALG, ...)
    limits: object = None  # security.Limits, planned by the launcher from the host's cgroups
    cgroup_dir: str | None = None  # a delegated cgroup v2 made for this sandbox, when the host has one
    console_fd: int | None = None  # when the launcher relays a terminal: PID 1 sends the pty master over it
    console_launcher_fd: int | None = None  # the launcher's end, closed at once by the sandbox's processes
    notes: list[str] = field(default_factory=list)  # said once on stderr before the sandbox starts
    profile: str = "default"
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


@dataclass
class RunOptions:
    """What the command line says; None (or empty) where it leaves the profile's choice alone."""

    command: list[str] = field(default_factory=list)
    profile: str = "default"
    hostname: str | None = None
    chdir: str | None = None
    env: list[str] = field(default_factory=list)
    user: str | None = None
    timeout: str | None = None
    name: str | None = None
    json_status: str | None = None
    net: str | None = None
    publish: list[str] = field(default_factory=list)
    allow_host_loopback: bool = False
    binds: list[str] = field(default_factory=list)
    ro_binds: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    rootfs: str | None = None
    verbose: bool = False
    debug: bool = False


def split_mount_arg(text: str, cwd: str, option: str) -> tuple[str, str]:
    """`SRC[:DST]` of --bind, --ro-bind and --overlay: SRC relative to the current directory, DST as SRC
    when absent. A colon belongs to SRC unless what follows the last one is an absolute path."""
    src, sep, dst = text.rpartition(":")
    if not sep or not dst.startswith("/") or not src:
        src, dst = text, ""
    if not src:
        raise RootsandError(f"{option}: expected SRC[:DST], got {text!r}")
    src = os.path.normpath(os.path.join(cwd, src))
    return src, os.path.normpath(dst) if dst else src


def cli_mounts(options: RunOptions, cwd: str) -> list:
    """The mounts the command line adds after the profile's, in the order: binds, ro-binds, tmpfs, overlays."""
    from rootsand.profile import Mount

    mounts = []
    for kind, values, option in (("bind", options.binds, "--bind"), ("ro-bind", options.ro_binds, "--ro-bind")):
        for text in values:
            src, dst = split_mount_arg(text, cwd, option)
            mounts.append(Mount(type=kind, src=src, dst=_checked_dst(dst, option)))
    for dst in options.tmpfs:
        mounts.append(Mount(type="tmpfs", dst=_checked_dst(os.path.normpath(os.path.join(cwd, dst)), "--tmpfs")))
    for text in options.overlays:
        src, dst = split_mount_arg(text, cwd, "--overlay")
        mounts.append(Mount(type="overlay", lower=[src], upper="tmpfs", dst=_checked_dst(dst, "--overlay")))
    return mounts


def _checked_dst(dst: str, option: str) -> str:
    if dst == "/":
        raise RootsandError(f"{option}: cannot mount over / (use --rootfs for another root)")
    return dst


def rootfs_mounts() -> list:
    """What every --rootfs tree gets on top of itself: its own /proc, a minimal /dev, a private /tmp."""
    from rootsand.profile import Mount

    return [Mount(type="proc", dst="/proc"), Mount(type="dev", dst="/dev"),
            Mount(type="tmpfs", dst="/tmp", mode=0o1777)]


def from_profile(profile, options: RunOptions, host_env: dict[str, str], cwd: str, cpu_count: int,
                 homes: tuple[str, ...] = ()) -> SandboxSpec:
    """Merge a loaded profile with the command line: the command line wins, its mounts come last."""
    assignments = dict(profile.env_set)
    if assignments.get("MAKEFLAGS") == "auto":
        assignments["MAKEFLAGS"] = f"-j{cpu_count}"
    assignments.update(parse_env_assignment(e) for e in options.env)
    net_mode = options.net or profile.net_mode
    if net_mode not in ("none", "host", "slirp"):
        raise RootsandError(f"invalid --net {net_mode!r}: expected none, slirp or host")
    from rootsand.network import parse_publish

    publish = [parse_publish(p) for p in list(profile.publish) + options.publish]
    if publish and net_mode != "slirp":
        raise RootsandError(f"--publish needs --net slirp (the network mode is {net_mode})")
    namespaces = tuple(ns for ns in profile.namespaces if not (ns == "net" and net_mode == "host"))
    if not profile.no_new_privs:
        raise RootsandError(f"profile {profile.name}: security.no_new_privs = false is not supported: "
                            "rootsand always sets no_new_privs, so setuid programs inside gain nothing")
    for needed in ("user", "mount", "pid"):
        if needed not in namespaces:
            raise RootsandError(f"profile {profile.name}: namespaces must include {needed!r}: "
                                "rootsand builds every sandbox on its own user, mount and PID namespaces")
    timeout = options.timeout if options.timeout is not None else profile.timeout
    notes = []
    if options.rootfs:
        rootfs = os.path.normpath(os.path.join(cwd, options.rootfs))
        mounts = rootfs_mounts() + cli_mounts(options, cwd)
    else:
        rootfs = None
        from rootsand.profile import Mount

        mounts = [Mount(type="dir", dst=cwd) if _exposes_home(m, cwd, homes) else m for m in profile.mounts]
        if mounts != list(profile.mounts):
            notes.append(f"the current directory {cwd} holds your home directory: it is not made visible, "
                         "only an empty directory stands there (cd into a project directory, or --bind it)")
        mounts += cli_mounts(options, cwd)
    return SandboxSpec(
        command=options.command or ["/bin/sh"],
        user=parse_user(options.user or profile.user),
        hostname=validate_hostname(options.hostname or profile.hostname),
        chdir=options.chdir or ("/" if rootfs else profile.chdir or cwd),
        cwd=cwd,
        env=build_env(host_env, profile.env_clear, tuple(profile.env_keep), assignments),
        timeout=parse_duration(timeout) if timeout is not None else None,
        name=validate_name(options.name) if options.name else None,
        namespaces=namespaces,
        idmap=profile.idmap,
        time_offsets=dict(profile.time_offsets),
        json_status=options.json_status,
        mounts=mounts,
        rootfs=rootfs,
        net_mode=net_mode,
        allow_host_loopback=options.allow_host_loopback or profile.allow_host_loopback,
        publish=publish,
        dns=list(profile.dns),
        capabilities=_capabilities(profile.capabilities),
        seccomp=profile.seccomp,
        nested_userns=profile.nested_userns,
        new_session=profile.new_session,
        memory=profile.memory,
        pids=profile.pids,
        cpu=profile.cpu,
        rlimits=dict(profile.rlimits),
        setuid_bits=profile.setuid_bits,
        socket_families=tuple(profile.socket_families),
        profile=options.profile,
        verbose=options.verbose or options.debug,
        debug=options.debug,
        notes=notes,
    )


def _exposes_home(m, cwd: str, homes: tuple[str, ...]) -> bool:
    """A mount of the current directory (a bind, or an overlay over it) that would show a home directory
    it contains (run from /home), which the profile hides behind a tmpfs. Running from a home itself is
    asking for it: that stays. `homes` are real paths ($HOME's and the passwd entry's), as is `cwd`."""
    sources = [m.src] if m.type in ("bind", "ro-bind", "dev-bind") else list(m.lower) if m.type == "overlay" else []
    if cwd in homes or not any(src and os.path.normpath(src) == cwd for src in sources):
        return False
    return any(home.startswith(cwd.rstrip("/") + "/") for home in homes)


def _capabilities(names) -> int:
    from rootsand.profile import CAPABILITIES
    from rootsand.security import cap_mask

    return cap_mask(names, CAPABILITIES)
