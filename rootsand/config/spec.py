"""What the user asked for: a loaded profile and the command line, merged and validated once.

The profile's values arrive checked (profile.py, with file, line and key); only the command line's are
parsed here. The result is a SandboxSpec, the input of the plan stage (plan.py). Pure: what it needs to
know of the user's files (git's hook paths, dotfile links, real paths, a rule file) it asks a HostFiles
(hostfiles.py), which does all the reading.
"""

import fnmatch
import os

from rootsand.errors import RootsandError
from rootsand.config.model import (DEFAULT_ENV_KEEP, FALLBACK_PATH, Mount, Record, default_command, env_entries,
                                   parse_capability, parse_cpus, parse_duration, parse_env_assignment, parse_pids,
                                   parse_publish, parse_size, parse_user, validate_hostname, validate_name)
from rootsand.config.netmodes import MODES, NET_CHOICES, entry, modes_with, one_of
from rootsand.security import landlockrules

__all__ = ["SandboxSpec", "build_env", "from_profile", "parse_duration", "parse_env_assignment",
           "parse_user", "split_mount_arg", "validate_hostname", "validate_name", "FALLBACK_PATH"]


class SandboxSpec(Record):
    """The sandbox as asked for: every value checked, nothing yet decided about this host."""

    FIELDS = {
        "name": None,  # --name, or None: the launcher names it
        "profile": "default",
        "command": list,
        "command_fallback": list,  # run instead when command's program is not in the sandbox (the default shell)
        "user": lambda: parse_user("root"),
        "hostname": "rootsand",
        "chdir": "/",  # inside
        "parent_products": list,  # patterns: what the command may leave beside the current directory (plan.Handover)
        "cwd": "/",  # the physical directory rootsand was started in
        "homes": tuple,  # the user's home directories ($HOME and passwd), real paths
        "env": dict,
        "timeout": None,
        "namespaces": tuple,
        "idmap": "auto",  # auto | single | keep-id
        "time_offsets": dict,
        "mounts": list,  # Mount ops in order, each with its origin
        "rootfs": None,
        "net_mode": "none",
        "pod": None,  # run --pod NAME: the pod whose network (net_mode "pod") and user namespace it joins
        "allow_host_loopback": False,
        "publish": list,  # PortForward
        "allow_hosts": list, "deny_hosts": list, "header_timeout": 10.0,  # proxy mode (allowlist.py)
        "dns": list,
        "capabilities": list,  # names, or "all"
        "seccomp": "default",  # default | none | a rule file's path
        "seccomp_file_rules": list,  # the rule file's rules, read and checked here
        "nested_userns": False,
        "new_session": True,
        "tty": False,  # --tty
        "setuid_bits": False,
        "socket_families": tuple,
        "compat_syscalls": True,  # 32-bit system calls allowed (through the same rules)
        "landlock": "scope-only",  # on | off | scope-only (security/landlockrules.py)
        "landlock_revoked": tuple,  # paths inside whose Landlock rules lose their write rights (tests only)
        "protect": list,  # paths made read-only inside the writable binds of the user's directories
        "placeholders": False,  # an absent protected path is made empty and read-only (else checked after)
        "home_writable": list,  # "~/PATH": writable exceptions to the home rule (homerule.py)
        "hide": list,  # patterns of files in the writable binds that read as empty (security.hide)
        "unhide": list,  # absolute paths: what --unhide shows, with all below it
        "host_path": tuple,  # the directories of the user's PATH on the host: what the user's shells run
        "own_dirs": tuple,  # rootsand's own configuration and state: never writable from a sandbox
        "real_sources": dict,  # bind sources and overlay uppers -> where their links lead (the home rule)
        "xdg_dirs": tuple,
        "dot_links": dict,  # where the links among a home's dot-entries lead -> the link (homerule.py)  # $XDG_CONFIG_HOME, $XDG_DATA_HOME, $XDG_STATE_HOME where set: read-only in a home
        "memory": None,
        "pids": None,
        "cpu": None,
        "rlimits": dict,
        "notes": tuple,  # said once on stderr before the sandbox starts
    }
    __slots__ = tuple(FIELDS)


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


def split_mount_arg(text: str, cwd: str, option: str) -> tuple[str, str]:
    """`SRC[:DST]` of --bind, --ro-bind and --overlay: SRC relative to the current directory, DST as SRC
    when absent. A colon belongs to SRC unless what follows the last one is an absolute path."""
    src, sep, dst = text.rpartition(":")
    if not sep or not dst.startswith("/") or not src:
        src, dst = text, ""
    if not src:
        raise RootsandError(f"{option} {text}: expected SRC[:DST]")
    src = os.path.normpath(os.path.join(cwd, src))
    return src, os.path.normpath(dst) if dst else src


def cli_mounts(options, cwd: str) -> list[Mount]:
    """The mounts the command line adds after the profile's, in the order: binds, ro-binds, tmpfs, overlays."""
    mounts = []
    for kind, values, option in (("bind", options.binds, "--bind"), ("ro-bind", options.ro_binds, "--ro-bind")):
        for text in values:
            src, dst = split_mount_arg(text, cwd, option)
            origin = f"{option} {text}"
            mounts.append(Mount(type=kind, src=src, dst=_checked_dst(dst, origin), origin=origin))
    for text in options.tmpfs:
        origin = f"--tmpfs {text}"
        mounts.append(Mount(type="tmpfs", dst=_checked_dst(os.path.normpath(os.path.join(cwd, text)), origin),
                            origin=origin))
    for text in options.overlays:
        src, dst = split_mount_arg(text, cwd, "--overlay")
        origin = f"--overlay {text}"
        mounts.append(Mount(type="overlay", lower=[src], upper="tmpfs", dst=_checked_dst(dst, origin), origin=origin))
    for text in options.volumes:
        kind, src, dst = _volume(text, cwd)
        mounts.append(Mount(type=kind, src=src, dst=_checked_dst(dst, f"--volume {text}"), origin=f"--volume {text}"))
    for text in options.devices:  # a device node, or a directory of them (/dev/dri): runtime/hostprep.py checks
        src, dst = split_mount_arg(text, cwd, "--device")
        mounts.append(Mount(type="dev-bind", src=src, dst=_checked_dst(dst, f"--device {text}"),
                            origin=f"--device {text}"))
    return mounts


def _volume(text: str, cwd: str) -> tuple[str, str, str]:
    """podman's `--volume SRC:DST[:OPTIONS]`: "bind" or "ro-bind", SRC (absolute or ./relative), DST. Of the
    options, ro and rw; z and Z (SELinux labels, which these hosts do not use) change nothing."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise RootsandError(f"invalid --volume {text!r}: expected SRC:DST[:ro|rw] with an absolute DST",
                            hint="--bind SRC[:DST] and --ro-bind take the same")
    if not parts[0].startswith(("/", "./", "../")) and parts[0] not in (".", ".."):
        raise RootsandError(f"invalid --volume {text!r}: {parts[0]} would be a podman named volume, which "
                            "rootsand does not have", hint=f"a directory here: ./{parts[0]}")
    options = parts[2].split(",") if len(parts) == 3 else []
    unknown = [o for o in options if o not in ("ro", "rw", "z", "Z")]
    if unknown or ("ro" in options and "rw" in options):
        raise RootsandError(f"invalid --volume {text!r}: options are ro or rw (z and Z are accepted and ignored)")
    return ("ro-bind" if "ro" in options else "bind", os.path.normpath(os.path.join(cwd, parts[0])),
            os.path.normpath(parts[1]))


def _checked_dst(dst: str, origin: str) -> str:
    if dst == "/":
        raise RootsandError(f"{origin}: cannot mount over / (use --rootfs for another root)")
    return dst


def rootfs_mounts() -> list[Mount]:
    """What every --rootfs tree gets on top of itself: its own /proc, a minimal /dev, a private /tmp."""
    return [Mount(type="proc", dst="/proc", origin="--rootfs"), Mount(type="dev", dst="/dev", origin="--rootfs"),
            Mount(type="tmpfs", dst="/tmp", mode=0o1777, origin="--rootfs")]


def from_profile(profile, options, host_env: dict[str, str], cwd: str, cpu_count: int,
                 homes: tuple[str, ...] = (), files=None) -> SandboxSpec:
    """Merge a loaded profile with the command line (`options`: a cli.options.RunOptions, or any object with
    its attributes): the command line wins, its mounts come last. `files`: a hostfiles.HostFiles."""
    if files is None:
        from rootsand.config.hostfiles import HostFiles

        files = HostFiles()
    assignments = dict(profile.env_set)
    if assignments.get("MAKEFLAGS") == "auto":
        assignments["MAKEFLAGS"] = f"-j{cpu_count}"
    for path in options.env_files:  # then -e: the command line's last word wins, as podman's
        assignments.update(env_entries(files.env_file(os.path.join(cwd, path)), host_env, f"--env-file {path} entry"))
    assignments.update(env_entries(options.env, host_env))
    net_mode = options.net or (modes_with("allowlist")[0] if options.allow_hosts else profile.net_mode)
    pod = getattr(options, "pod", None)
    if pod:
        if options.net or options.allow_hosts:
            raise RootsandError(f"--pod joins the pod's network: it takes no --net {options.net or 'proxy'}")
        net_mode = modes_with("pod")[0]
    elif net_mode not in NET_CHOICES:  # a pod's member only through --pod
        raise RootsandError(f"invalid --net {net_mode!r}: expected {one_of(NET_CHOICES)}")
    mode = entry(net_mode)
    if options.allow_hosts and not mode.allowlist:
        raise RootsandError(f"--allow-host needs --net {one_of(modes_with('allowlist'))} "
                            f"(the network mode is {net_mode})")
    allow_hosts = list(profile.allow_hosts)
    if options.allow_hosts:
        from rootsand.net import allowlist  # ipaddress: only where there are entries to check

        allow_hosts += [allowlist.parse_entry(text, "--allow-host").text for text in options.allow_hosts]
    publish = list(profile.publish) + [parse_publish(p) for p in options.publish]
    if publish and not mode.publish:
        raise RootsandError(f"--publish needs --net {one_of(modes_with('publish'))} (the network mode is {net_mode})")
    if mode.own_netns and "net" not in profile.namespaces:  # else the host's network, whatever the mode says
        raise RootsandError(f"network mode {net_mode} needs the net namespace, which the profile's "
                            "sandbox.namespaces leaves out", hint='add "net" to sandbox.namespaces, or use --net host')
    namespaces = tuple(ns for ns in profile.namespaces if not (ns == "net" and not mode.own_netns))
    timeout = parse_duration(options.timeout) if options.timeout is not None else profile.timeout
    notes = []
    git_env = {}
    if options.rootfs:
        rootfs = os.path.normpath(os.path.join(cwd, options.rootfs))
        _check_rootfs(rootfs, files.realpath(rootfs), homes, files.own_dirs(host_env, homes))
        mounts = rootfs_mounts() + cli_mounts(options, cwd)
    else:
        rootfs = None
        mounts = []
        for m in profile.mounts:
            why = _too_wide(m, cwd, homes, host_env)
            if why:  # an empty directory stands in its place, so the mounts below it still have one
                mounts.append(Mount(type="dir", dst=m.dst, origin=m.origin))
                notes.append(f"{why}: it is not made visible, only an empty directory stands there "
                             "(cd into a project directory, or --bind what you mean)")
            else:
                mounts.append(m)
        if profile.git == "read-only":
            worktree, git_dirs, note = files.git_dirs(cwd, homes)
            mounts += [Mount(type="ro-bind", src=path, dst=path, origin=GIT_ORIGIN) for path in git_dirs]
            notes += [note] if note else []
            if git_dirs and worktree != cwd:
                # git stops looking upwards where the file system changes (the sandbox's tmpfs around the
                # current directory's bind), before it reaches the work tree's .git
                git_env["GIT_DISCOVERY_ACROSS_FILESYSTEM"] = "1"
        mounts += cli_mounts(options, cwd)
    writable = [cwd] + [os.path.normpath(m.src) for m in mounts if m.type in ("bind", "dev-bind") and m.src]
    hooks = [entry for entry in files.hook_dirs(writable, homes, host_env) if entry not in profile.protect]
    protect, home_writable = protected_paths(list(profile.protect) + hooks, options.unprotect)
    hide, unhide = hidden_patterns(profile.hide, options.unhide, cwd)
    seccomp = profile.seccomp if options.seccomp is None else (
        options.seccomp if options.seccomp in ("default", "none") else files.seccomp_file(os.path.join(cwd, options.seccomp)))
    seccomp_file_rules = []
    if seccomp not in ("default", "none"):
        _check_rule_file_is_out_of_reach(seccomp, mounts, files.realpath)
        seccomp_file_rules = files.rule_file(seccomp)
    command, command_fallback = (options.command, []) if options.command else default_command(host_env)
    return SandboxSpec(
        name=validate_name(options.name) if options.name else None,
        profile=options.profile,
        command=command,
        command_fallback=command_fallback,
        user=parse_user(options.user) if options.user else profile.user,
        hostname=validate_hostname(options.hostname) if options.hostname else profile.hostname,
        parent_products=list(profile.parent_products),
        chdir=os.path.normpath(os.path.join("/" if options.rootfs else cwd, options.chdir)) if options.chdir else (
            "/" if rootfs else profile.chdir or cwd),
        cwd=cwd,
        homes=tuple(homes),
        env=build_env(host_env, profile.env_clear, tuple(profile.env_keep), {**git_env, **assignments}),
        timeout=timeout,
        namespaces=namespaces,
        idmap=profile.idmap,
        time_offsets=dict(profile.time_offsets),
        mounts=mounts,
        rootfs=rootfs,
        net_mode=net_mode,
        pod=validate_name(pod) if pod else None,
        allow_host_loopback=options.allow_host_loopback or profile.allow_host_loopback,
        publish=publish,
        allow_hosts=allow_hosts,
        deny_hosts=list(profile.deny_hosts),
        header_timeout=profile.header_timeout,
        dns=list(profile.dns),
        capabilities=capabilities(profile.capabilities, options.cap_add, options.cap_drop),
        seccomp=seccomp,
        seccomp_file_rules=seccomp_file_rules,
        nested_userns=profile.nested_userns,
        new_session=profile.new_session,
        tty=_tty(options.tty, profile.new_session),
        setuid_bits=profile.setuid_bits,
        socket_families=tuple(profile.socket_families),
        compat_syscalls=profile.compat_syscalls,
        landlock=_landlock(options.landlock) if options.landlock is not None else profile.landlock,
        landlock_revoked=tuple(p for p in host_env.get(landlockrules.REVOKE_VARIABLE, "").split(":") if p),
        protect=protect,
        placeholders=profile.placeholders,
        home_writable=list(dict.fromkeys(list(profile.home_writable) + home_writable)),
        hide=hide,
        unhide=unhide,
        host_path=tuple(os.path.normpath(d) for d in host_env.get("PATH", "").split(":") if d.startswith("/")),
        own_dirs=files.own_dirs(host_env, homes),
        real_sources={path: files.realpath(path) for m in mounts
                      for path in ([m.src] if m.type in ("bind", "dev-bind") and m.src else [])
                      + ([m.upper] if m.type == "overlay" and m.upper != "tmpfs" else [])},
        xdg_dirs=tuple(dict.fromkeys(path for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")
                                     if host_env.get(name, "").startswith("/")
                                     for path in (os.path.normpath(host_env[name]), files.realpath(host_env[name])))),
        dot_links=files.dot_links(homes),
        memory=_memory(options.memory) if options.memory is not None else profile.memory,
        pids=parse_pids(options.pids) if options.pids is not None else profile.pids,
        cpu=parse_cpus(options.cpus) if options.cpus is not None else profile.cpu,
        rlimits=dict(profile.rlimits),
        notes=tuple(notes),
    )


def _landlock(text: str) -> str:
    if text not in landlockrules.MODES:
        modes = landlockrules.MODES
        raise RootsandError(f"invalid --landlock {text!r}: expected {', '.join(modes[:-1])} or {modes[-1]}")
    return text


def _memory(text: str) -> int:
    size = parse_size(text, "--memory")
    if size == 0:
        raise RootsandError(f"invalid --memory {text!r}: must be more than 0")
    return size


def _tty(asked: bool, new_session: bool) -> bool:
    if asked and not new_session:
        raise RootsandError("--tty needs a session of the command's own, which the profile's sandbox.new_session "
                            "= false leaves out", hint="drop --tty, or use a profile with new_session = true")
    return asked


def capabilities(kept, add: list[str], drop: list[str]):
    """The profile's capabilities ("all" or names) with --cap-drop taken away, then --cap-add given (so
    `--cap-drop all --cap-add net_raw` keeps only that one, as podman's)."""
    from rootsand.config.model import CAPABILITIES

    def names(texts: list[str], option: str) -> list[str]:
        if any(text.lower() == "all" for text in texts):
            return list(CAPABILITIES)
        out = []
        for text in texts:
            try:
                out.append(parse_capability(text))
            except RootsandError as e:
                raise RootsandError(f"invalid {option} {text!r}: {e.message}", e.hint) from None
        return out

    dropped = names(drop, "--cap-drop")
    if kept == "all" and not dropped:
        return kept
    left = [c for c in (CAPABILITIES if kept == "all" else kept) if c not in dropped]
    return "all" if set(names(add, "--cap-add")) >= set(CAPABILITIES) else list(
        dict.fromkeys(left + names(add, "--cap-add")))


GIT_ORIGIN = "sandbox.git = read-only: the git directory of the work tree the current directory is in"


def protected_paths(protect: list[str], unprotect: list[str]) -> tuple[list[str], list[str]]:
    """The profile's protected paths without those --unprotect lifts (written with or without the `~/`
    and the final `/`), and the home paths --unprotect makes writable (`~/PATH` that is no protected path:
    an exception to the home rule, homerule.py). Lifting a relative path that is not protected is an
    error, as it is likely a typo."""
    from rootsand.config.model import parse_home_path, parse_protect_entry

    def key(entry: str) -> str:
        return entry.removeprefix("~/").rstrip("/")

    kept, home_writable = list(protect), []
    for text in unprotect:
        wanted = key(parse_protect_entry(text))
        matches = [entry for entry in kept if key(entry) == wanted]
        if not matches and text.startswith("~/"):
            home_writable.append(parse_home_path(text.rstrip("/")))
            continue
        if not matches:
            raise RootsandError(f"--unprotect {text}: not a protected path of this profile",
                                hint="protected: " + (", ".join(protect) or "none")
                                + "; a path in your home (~/PATH) is made writable")
        kept = [entry for entry in kept if entry not in matches]
    return kept, home_writable


def hidden_patterns(hide: list[str], unhide: list[str], cwd: str) -> tuple[list[str], list[str]]:
    """The profile's hide patterns without those --unhide names as written, and the paths it names otherwise
    (relative to the current directory): shown, with everything below them."""
    from rootsand.config.model import parse_hide_entry

    kept, shown = list(hide), []
    for text in unhide:
        try:
            entry = parse_hide_entry(text)
        except RootsandError:
            entry = None
        if entry in kept:
            kept.remove(entry)
        elif not text or "\0" in text:
            raise RootsandError(f"invalid --unhide {text!r}: expected a path or one of the hide patterns")
        else:
            shown.append(os.path.normpath(os.path.join(cwd, text)))
    return kept, shown


def _check_rootfs(rootfs: str, real: str, homes: tuple[str, ...], own: tuple[str, ...]) -> None:
    """A --rootfs tree is mounted writable as it is: one that holds a home or rootsand's own files (`/`,
    `~`) would hand the sandbox all the home rule keeps from it."""
    for path in (rootfs, real):
        held = next((d for d in homes + own if d.startswith(path.rstrip("/") + "/") or d == path), None)
        if held:
            raise RootsandError(f"--rootfs {rootfs}: it holds {held}, which a sandbox must not write",
                                hint="use a tree of its own (debootstrap, an unpacked image)")
        home = next((h for h in homes if path.startswith(h + "/") and path[len(h) + 1:].startswith(".")), None)
        if home:
            raise RootsandError(f"--rootfs {rootfs}: it is inside {home}/{path[len(home) + 1:].split('/')[0]}, "
                                "where programs on your host find what to run",
                                hint="use a tree outside your home's dot-directories")


def _too_wide(m, cwd: str, homes: tuple[str, ...], env: dict[str, str]) -> str | None:
    """Why a profile's bind or overlay of a host directory would show too much, or None: a home directory
    (which the profile hides behind a tmpfs) or a directory holding one (run from /home), or a directory of
    other programs' sockets. The current directory when it is a home itself is asked for: that stays.
    `homes` are real paths ($HOME's and the passwd entry's), as is `cwd`."""
    sources = [m.src] if m.type in ("bind", "ro-bind", "dev-bind") else list(m.lower) if m.type == "overlay" else []
    for src in (os.path.normpath(s) for s in sources if s):
        what = "the current directory" if src == cwd else "the directory"
        if src in homes:
            if src == cwd:
                continue
            return f"{what} {src} is your home directory"
        if any(home.startswith(src.rstrip("/") + "/") for home in homes):
            return f"{what} {src} holds your home directory"
        shared = _shared_socket_dir(src, env)
        if shared:
            return f"{what} {src} is shared with other programs' sockets ({shared})"
    return None


# Where programs keep their sockets (tmux, X11, ssh-agent, D-Bus): connecting to a socket by its path
# ignores network namespaces, so binding one of these would hand the sandbox the user's live sessions.
SHARED_SOCKET_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run", "/var/run")


def _shared_socket_dir(cwd: str, env: dict[str, str]) -> str | None:
    """The socket directory the current directory is or holds, if any."""
    runtime = os.path.normpath(env["XDG_RUNTIME_DIR"]) if os.path.isabs(env.get("XDG_RUNTIME_DIR", "")) else None
    for place in SHARED_SOCKET_DIRS + ((runtime,) if runtime else ()):
        if cwd == place or place.startswith(cwd.rstrip("/") + "/"):
            return place if cwd == place else f"{place}, below it"
    return None


def writable_dirs(mounts: list[Mount], realpath) -> list[str]:
    """The host directories a sandbox with these mounts can write, resolved (plan.writable_sources)."""
    from rootsand.config.plan import real_dirs, writable_sources

    return real_dirs(writable_sources(mounts), realpath)


def _check_rule_file_is_out_of_reach(path: str, mounts: list[Mount], realpath) -> None:
    """A rule file the sandbox can write could be loosened by the code it is meant to contain."""
    real = realpath(path)
    for top in writable_dirs(mounts, realpath):
        if real == top or real.startswith(top.rstrip("/") + "/"):
            raise RootsandError(f"the seccomp rule file {path} is inside {top}, which the sandbox can write",
                                hint="keep rule files where the sandbox cannot write, e.g. ~/.config/rootsand/")
