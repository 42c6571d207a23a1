"""A Plan as an OCI runtime bundle: config.json and a skeleton root that runc and crun run as they are.

Pure: the resolved Plan (runtime/hostprep.py decided each mount's kind and which protected paths exist),
the machine's name and the bundle's directory in; the config (a dict), what the bundle directory must hold
(the skeleton root's links and mount points, the generated /etc files) and what the bundle does otherwise
than `rootsand run` out. What OCI cannot express is refused (RootsandError) where leaving it out would open
a wall, and listed otherwise: nothing is dropped without a word.

The root: rootsand's is an empty read-only tmpfs with the mounts on it. OCI has no tmpfs at / (runc's and
crun's mounts go into the root they were given) and no link op, so the bundle's root is a directory
holding the links and the mount points, read-only.
"""

import os

from rootsand.config.model import CAPABILITIES
from rootsand.config.netmodes import MODES
from rootsand.errors import RootsandError
from rootsand.export import seccomp as seccomp_export

NAMESPACES = {"user": "user", "pid": "pid", "mount": "mount", "uts": "uts", "ipc": "ipc", "net": "network",
              "cgroup": "cgroup", "time": "time"}
RLIMITS = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "fsize": "RLIMIT_FSIZE", "core": "RLIMIT_CORE",
           "cpu": "RLIMIT_CPU", "as": "RLIMIT_AS"}
UNLIMITED = (1 << 64) - 1
# The sysctls runc accepts (those of the IPC and network namespaces): it refuses user.* outright.
SYSCTL_PREFIXES = ("kernel.shm", "kernel.msg", "kernel.sem", "fs.mqueue.", "net.")
NOT_EXPORTED = "is not exported"


# Every field of the Plan and of its Resolved part, and where the exports put it: a field added to the plan
# (a new wall) fails tests/unit/test_export.py until it is exported, refused or listed here with a reason.
PLAN_FIELDS = {
    "name": "not needed: the engine names the container", "profile": "annotations",
    "argv": "process.args", "env": "process.env", "chdir": "process.cwd", "cwd": "the mounts' paths",
    "hostname": "hostname", "argv_fallback": "listed", "homes": "the home rule's binds (home_guards)",
    "timeout": "listed (kube: activeDeadlineSeconds)", "memory": "rlimits or linux.resources (kube: limits)",
    "user": "process.user", "run_uid": "process.user", "run_gid": "process.user",
    "setup_uid": "listed where rootless runc refuses the maps", "setup_gid": "as setup_uid",
    "ids": "linux.uidMappings, gidMappings", "namespaces": "linux.namespaces", "time_offsets": "linux.timeOffsets",
    "rootfs": "root", "mounts": "mounts and the skeleton", "writable": "the binds' rw flag",
    "home_guards": "read-only binds", "protected": "read-only binds; absent ones listed",
    "etc_files": "files/etc, bound read-only", "network": "the proxy mode refused; a helper's listed",
    "capabilities": "process.capabilities", "no_new_privs": "process.noNewPrivileges",
    "new_session": "runc (tests/walls_probe.py) and crun start the command in a new session",
    "tty": "listed: the export asks for no terminal (the engine's own -t gives one)",
    "landlock": "listed: rootsand's own second wall, which OCI cannot express",
    "hidden": "listed: the secrets are found when the sandbox starts, which a bundle cannot do",
    "nested_userns": "seccomp rules and sysctl",
    "setuid_bits": "seccomp rules", "handover": "listed", "seccomp": "linux.seccomp",
    "compat_syscalls": "linux.seccomp.architectures", "limits": "process.rlimits, linux.resources",
    "cgroup_parent": "not needed: the engine places the container's cgroup", "sysctls": "linux.sysctl, or listed",
    "notes": "said, as run says them", "resolved": "RESOLVED_FIELDS",
    # set by `rootsand bwrap` alone (config/bwrap.py), whose plans are not exported: empty in a profile's
    **{field: "rootsand bwrap's alone: never set in a profile's plan" for field in (
        "chdir_else", "set_pwd", "argv0", "as_pid_1", "die_with_parent", "lock_files", "userns_layer",
        "seccomp_bpf", "block_fd", "keep_fds")},
}
RESOLVED_FIELDS = {
    "mounts": "mounts", "rootfs": "root", "writable": "the binds' rw flag", "protect": "protected paths' binds",
    "audit": "listed", "setuid_tops": "listed", "handover": "listed", "notes": "not said (run says them with -v)",
    "warnings": "said, as run says them", "made": "made by the CLI, as run makes them",
}


def said(plan) -> list[str]:
    """What `rootsand run` says about this plan before it starts (its notes and resolved warnings)."""
    return list(plan.notes) + (list(plan.resolved.warnings) if plan.resolved else [])


class Bundle:
    """What export_bundle() makes: `config` (config.json); `dirs` (path -> mode) and `links` (path -> target),
    the skeleton root, paths relative to it; `files` (bundle-relative path -> content: the generated files the
    config binds, the skeleton's file mount points); `listed` (what the bundle does otherwise than
    `rootsand run`, one line each)."""

    __slots__ = ("config", "dirs", "links", "files", "listed")

    def __init__(self):
        self.config, self.dirs, self.links, self.files, self.listed = {}, {}, {}, {}, []


def below(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _flags(step, extra=()) -> list[str]:
    return list(extra) + [f for f in ("ro", "nosuid", "nodev", "noexec") if f in step.flags]


def _bind(src: str, dst: str, read_only: bool, more=("nosuid", "nodev")) -> dict:
    return {"destination": dst, "type": "bind", "source": src,
            "options": ["rbind", "ro" if read_only else "rw", *more]}


def _fs_options(options: dict) -> list[str]:
    return [f"{key}={value}" for key, value in options.items() if key in ("mode", "size")]


def _dev(step, bundle: Bundle) -> list[dict]:
    """rootsand's minimal /dev: a tmpfs, its nodes (null, zero, full, random, urandom, tty: runc's and crun's
    defaults, which they bind from the host in a user namespace), pts and shm. The runtimes make the nodes
    after mounting it: it stays writable (rootsand makes it read-only)."""
    if sorted(step.nodes) != sorted(("null", "zero", "full", "random", "urandom", "tty")):
        bundle.listed.append(f"/dev: the runtime's default nodes, not {', '.join(step.nodes)}")
    bundle.listed.append("/dev is writable (the runtime makes its nodes in it after mounting it); rootsand's is "
                         "read-only")
    dst = step.dst.rstrip("/")
    options = step.options
    pts = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
    if "pts_max" in options:
        pts.append(f"max={options['pts_max']}")
    shm = ["nosuid", "nodev", "noexec", "mode=1777"] + ([f"size={options['shm_size']}"] if "shm_size" in options
                                                       else [])
    return [{"destination": dst, "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "noexec", "strictatime", *_fs_options(options)]},
            {"destination": f"{dst}/pts", "type": "devpts", "source": "devpts", "options": pts},
            {"destination": f"{dst}/shm", "type": "tmpfs", "source": "shm", "options": shm}]


def _overlay(step, bundle: Bundle) -> list[dict]:
    """An overlay's writes cannot be had: runc and crun mount no fuse-overlayfs, and a kernel overlay needs an
    upper directory that OCI cannot put on a throw-away tmpfs. Its lower directory read-only instead (what
    rootsand does itself where no overlay can be had): nothing written there reaches the host either way."""
    if len(step.lower) != 1:
        raise RootsandError(f"{step.origin or step.dst}: an overlay of {len(step.lower)} lower directories "
                            f"cannot be exported", "OCI runtimes mount no fuse-overlayfs; bind one directory instead")
    bundle.listed.append(f"overlay {step.dst}: {step.lower[0]} bound read-only (OCI runtimes mount no "
                         f"{'fuse-overlayfs' if step.kind == 'fuse' else 'throw-away overlay'}): writes there fail")
    return [_bind(step.lower[0], step.dst, True)]


def _mount(step, index: int, plan, bundle: Bundle, bundle_dir: str) -> list[dict]:
    if step.kind == "absent":  # optional and not on this host: rootsand skips it too
        return []
    if step.type in ("bind", "ro-bind", "dev-bind"):
        return [{"destination": step.dst, "type": "bind", "source": step.src,
                 "options": _flags(step, ("rbind",) if "ro" in step.flags else ("rbind", "rw"))}]
    if step.type == "tmpfs":
        return [{"destination": step.dst, "type": "tmpfs", "source": "tmpfs",
                 "options": _flags(step) + _fs_options(step.options)}]
    if step.type == "proc":
        return [{"destination": step.dst, "type": "proc", "source": "proc", "options": _flags(step)}]
    if step.type == "mqueue":
        return [{"destination": step.dst, "type": "mqueue", "source": "mqueue", "options": _flags(step)}]
    if step.type == "dev":
        return _dev(step, bundle)
    if step.type == "overlay":
        return _overlay(step, bundle)
    if step.type == "file":
        name = f"files/{index}{step.dst.replace('/', '_')}"
        bundle.files[name] = step.content
        return [_bind(os.path.join(bundle_dir, name), step.dst, True)]
    if step.type in ("symlink", "dir"):
        covering = [m.dst for m in plan.mounts[:index] if m.type not in ("symlink", "dir", "file")
                    and below(step.dst, m.dst)]
        if step.type == "dir" and (covering or plan.rootfs):  # an empty directory: no wall, and no way to make it
            bundle.listed.append(f"the directory {step.dst} is not made (OCI has no directory op)")
            return []
        if covering or plan.rootfs:
            # below an earlier mount (or in the user's --rootfs): the skeleton cannot hold it
            raise RootsandError(f"{step.origin or step.dst}: a {step.type} at {step.dst} "
                                f"{'in --rootfs' if plan.rootfs else 'inside the mount on ' + covering[-1]} cannot "
                                f"be exported", "OCI has no link or directory op; only the root's own can be made")
        path = step.dst.strip("/")
        if step.type == "symlink":
            bundle.links[path] = step.src
        else:
            bundle.dirs[path] = step.mode if step.mode is not None else 0o755
        return []
    raise RootsandError(f"{step.origin or step.dst}: a {step.type} mount cannot be exported")


def staging_mount(plan) -> int | None:
    """The index of the staging bind (plan.Handover): a directory the launcher makes for the run and empties
    after it. Left out: the parent of the current directory is then what the other mounts make it (a tmpfs,
    thrown away), and nothing is handed over (listed)."""
    handover = plan.resolved.handover if plan.resolved else plan.handover
    return handover.mount if handover and handover.staging else None


def _guards(plan, index: int, host_kind) -> list[dict]:
    """The home rule (homerule.py) right after its bind: the home read-only, its writable exceptions over it."""
    out = []
    for guard in plan.home_guards:
        if guard.mount == index:
            out.append(_bind(guard.home, guard.dst, True))
            for rel in sorted(guard.writable, key=lambda r: r.count("/")):
                if host_kind(os.path.join(guard.home, rel)):
                    out.append(_bind(os.path.join(guard.home, rel), os.path.join(guard.dst, rel), False))
    return out


def _protected(plan, steps: list, bundle: Bundle) -> list[dict]:
    """security.protect: each existing path bound read-only onto itself, after everything else (as PID 1 does).
    One absent is left absent: what the run makes there is not checked afterwards (rootsand moves it aside)."""
    found = (plan.resolved.protect or {}) if plan.resolved else {}
    covered = set(found.get("covered", []))
    out = []
    for item in plan.protected:
        top = steps[item.mount].src
        host = os.path.join(top, item.path)
        if host in covered:
            out.append(_bind(host, item.dst, True))
    for host, _ in found.get("made", []):
        bundle.listed.append(f"protected {host}: absent, not made empty and read-only (placeholders)")
    if found.get("absent"):
        bundle.listed.append("protected paths absent on the host (" + ", ".join(found["absent"]) + ") are not "
                             "checked after the run")
    return out


def _mount_points(mounts: list[dict], bundle: Bundle, host_kind) -> None:
    """The mount points that lie in the skeleton (not below an earlier mount), made in it: so the runtime makes
    none itself, as root inside, which may be a subordinate id that leaves you a bundle you cannot remove."""
    earlier = []
    for m in mounts:
        dst = m["destination"]
        parts = dst.strip("/").split("/")
        in_skeleton = not any(below(dst, e) for e in earlier)
        earlier.append(dst)
        if not in_skeleton or any("/".join(parts[:i]) in bundle.links for i in range(1, len(parts) + 1)):
            continue  # a link's target is resolved inside, by the runtime
        for i in range(1, len(parts)):
            bundle.dirs.setdefault("/".join(parts[:i]), 0o755)
        path = "/".join(parts)
        if m["type"] == "bind" and host_kind(m["source"]) not in (None, "dir"):
            bundle.files.setdefault(f"rootfs/{path}", "")
        else:
            bundle.dirs.setdefault(path, _mount_point_mode(m))


def _mount_point_mode(mount: dict) -> int:
    """A mount point's mode: runc gives a tmpfs the mode of the directory it is mounted on, when that exists
    (so the tmpfs's own, or the kernel's 1777 where the profile gives none)."""
    if mount["type"] != "tmpfs":
        return 0o755
    modes = [o.removeprefix("mode=") for o in mount["options"] if o.startswith("mode=")]
    return int(modes[-1], 8) if modes else 0o1777


def _process(plan, bundle: Bundle) -> dict:
    caps = [c for c in plan.capabilities if c in CAPABILITIES]
    rlimits = [{"type": RLIMITS[name], "hard": UNLIMITED if value < 0 else value,
                "soft": UNLIMITED if value < 0 else value} for name, value in plan.limits.rlimits.items()]
    if plan.argv_fallback:
        bundle.listed.append(f"the command {plan.argv[0]!r} has no fallback ({' '.join(plan.argv_fallback)}) where "
                             f"the root lacks it")
    return {
        "terminal": False,
        "user": {"uid": plan.run_uid, "gid": plan.run_gid},
        "args": list(plan.argv),
        "env": [f"{key}={value}" for key, value in plan.env.items()],
        "cwd": plan.chdir,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps,
                         "inheritable": caps if plan.run_uid else [], "ambient": caps if plan.run_uid else []},
        "rlimits": rlimits,
        "noNewPrivileges": bool(plan.no_new_privs),
    }


def _sysctls(plan, bundle: Bundle) -> dict:
    out = {}
    for key, value in plan.sysctls.items():
        name = key.replace("/", ".")
        if name.startswith(SYSCTL_PREFIXES):
            out[name] = value
        else:
            bundle.listed.append(f"sysctl {name} = {value} {NOT_EXPORTED} (runc refuses it)"
                                 + ("; the seccomp rules still refuse new user namespaces"
                                    if name == "user.max_user_namespaces" else ""))
    return out


def _resources(plan) -> dict:
    cgroup = plan.limits.cgroup
    out = {}
    if "memory.max" in cgroup:
        out["memory"] = {"limit": int(cgroup["memory.max"])}
        if cgroup.get("memory.swap.max") == "0":
            out["memory"]["swap"] = int(cgroup["memory.max"])  # OCI's swap is memory plus swap
    if "pids.max" in cgroup:
        out["pids"] = {"limit": int(cgroup["pids.max"])}
    if "cpu.max" in cgroup:
        quota, period = cgroup["cpu.max"].split()
        out["cpu"] = {"quota": int(quota), "period": int(period)}
    return out


def refusals(plan) -> None:
    """What no OCI runtime can carry out and the sandbox depends on: a RootsandError."""
    if plan.network.proxy_port is not None:
        raise RootsandError("the proxy network mode cannot be exported: OCI runtimes run no filtering proxy, and "
                            "the command's only way out would be gone",
                            "export with --net none (loopback only) or --net host; the engine's own network "
                            "(podman --network) replaces it")


def unexpressed(plan) -> list[str]:
    """What `rootsand run` does around the command that no exported form carries out: one line each."""
    lines = []
    if MODES[plan.network.mode].helper:  # the way out is a helper rootsand starts: the engine's own here
        lines.append(f"network {plan.network.mode}: a network namespace with loopback only; the engine's "
                     "network (podman --network slirp4netns or pasta) is the way out")
    if plan.timeout:
        lines.append(f"the timeout ({plan.timeout:g}s) {NOT_EXPORTED}")
    if plan.limits.not_enforced:
        lines += [f"limits: {line}" for line in plan.limits.not_enforced]
    resolved = plan.resolved
    if resolved and resolved.audit:
        lines.append("the git check after the run (new hooks, config, repositories in "
                     + ", ".join(resolved.audit["tops"]) + f") {NOT_EXPORTED}")
    if resolved and resolved.setuid_tops:
        lines.append("setuid bits set during the run are not cleared at exit")
    handover = resolved.handover if resolved else plan.handover
    if handover:
        lines.append(f"the hand-over after the run {NOT_EXPORTED}"
                     + (f": what the command writes beside {plan.cwd} stays inside" if handover.staging else "")
                     + (f"; files it makes in {handover.top} keep the owner they have inside" if handover.top
                        else ""))
    if plan.hidden:
        patterns = sorted({p for h in plan.hidden for p in h.patterns})
        lines.append(f"the secrets security.hide names ({', '.join(patterns)} in {', '.join(h.dst for h in plan.hidden)}) "
                     "are found when a rootsand sandbox starts: a bundle shows them")
    if plan.landlock and plan.landlock.mode != "off":
        lines.append(f"Landlock (landlock = {plan.landlock.mode!r}: the second wall under the mounts, and the "
                     "scopes of abstract sockets and signals) is rootsand's own: not in the bundle")
    if plan.time_offsets:
        lines.append("the time namespace's offsets are in linux.timeOffsets: runc before 1.2 ignores them")
    lines.append("the terminal filter (escape sequences from the command) is rootsand's own: the export "
                 "asks for no terminal" + (" (--tty: give the engine's own, runc run on a terminal, podman -t)"
                                           if plan.tty else ""))
    return lines


def export_bundle(plan, machine: str, bundle_dir: str, host_kind) -> Bundle:
    """The bundle for a resolved Plan (hostprep.resolve) on `machine` (os.uname().machine), to be written to
    `bundle_dir` (absolute). `host_kind(path)` says what a host path is: "dir", "file" (or another non-directory),
    or None when it is absent or a link is on its way (a home rule's writable exception is bound only then, as
    rootsand binds it; a bind's mount point in the skeleton is a file or a directory as its source is)."""
    refusals(plan)
    bundle = Bundle()
    steps = plan.resolved.mounts if plan.resolved else plan.mounts
    mounts = []
    staged = staging_mount(plan)
    for index, step in enumerate(steps):
        if index != staged:
            mounts += _mount(step, index, plan, bundle, bundle_dir)
        mounts += _guards(plan, index, host_kind)
    rootfs = (plan.resolved.rootfs if plan.resolved else None) or plan.rootfs
    for name, content in plan.etc_files.items():
        if rootfs and not host_kind(os.path.join(rootfs, "etc", name)):
            # the runtime would make the mount point among the user's files, which rootsand never does
            bundle.listed.append(f"/etc/{name} {NOT_EXPORTED}: {rootfs}/etc has none to bind it over")
            continue
        bundle.files[f"files/etc/{name}"] = content
        mounts.append(_bind(os.path.join(bundle_dir, "files/etc", name), f"/etc/{name}", True))
    mounts += _protected(plan, steps, bundle)
    if not rootfs:
        _mount_points(mounts, bundle, host_kind)
    proc = next((s for s in steps if s.type == "proc" and s.kind != "absent"), None)
    linux = {
        "uidMappings": [{"containerID": a, "hostID": b, "size": c} for a, b, c in plan.ids.uid_lines],
        "gidMappings": [{"containerID": a, "hostID": b, "size": c} for a, b, c in plan.ids.gid_lines],
        "namespaces": [{"type": NAMESPACES[ns]} for ns in plan.namespaces],
        "maskedPaths": [f"{proc.dst.rstrip('/')}/{p}" for p in proc.masked] if proc else [],
        "readonlyPaths": [f"{proc.dst.rstrip('/')}/{p}" for p in proc.read_only] if proc else [],
    }
    sysctls = _sysctls(plan, bundle)
    if sysctls:
        linux["sysctl"] = sysctls
    resources = _resources(plan)
    if resources:
        linux["resources"] = resources
    if plan.time_offsets:
        linux["timeOffsets"] = {clock: {"secs": int(secs), "nanosecs": 0} for clock, secs in plan.time_offsets.items()}
    if plan.seccomp is not None:
        linux["seccomp"] = seccomp_export.seccomp_object(plan.seccomp, machine, plan.compat_syscalls)
        bundle.listed += seccomp_export.differences(plan.seccomp, machine, plan.compat_syscalls)
    bundle.config = {
        "ociVersion": "1.0.2",
        "process": _process(plan, bundle),
        "root": {"path": rootfs or os.path.join(bundle_dir, "rootfs"), "readonly": not rootfs},
        "hostname": plan.hostname,
        "mounts": mounts,
        "linux": linux,
        "annotations": {"org.rootsand.profile": plan.profile},
    }
    if plan.root_mapped and plan.setup_uid != 0:
        # runc hands its pipes and exec.fifo to root inside, which only the user's own id can be given
        bundle.listed.append("root inside is one of your subordinate ids, not you: rootless runc refuses the "
                             "bundle (it cannot chown its pipes to root); crun, or runc run by root, runs it")
    bundle.listed += unexpressed(plan)
    return bundle

