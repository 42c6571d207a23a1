"""`rootsand doctor`: what this host lets rootsand do, for the current user, and how to fix what it lacks.

Each check is a small probe of the real thing where one is cheap (a user namespace, an overlay mount in
one), otherwise a look at the files and bits that decide it. The test harness prints the same report.
"""

import os
from dataclasses import asdict, dataclass

from rootsand.config import host, idmap
from rootsand.linux import libc, procfs
from rootsand.runtime import maps
from rootsand.security import cgroup

OK, DEGRADED, MISSING = "ok", "degraded", "missing"


@dataclass
class Check:
    name: str
    status: str  # ok | degraded | missing
    detail: str
    fix: str = ""


def checks() -> list[Check]:
    return [_userns(), _apparmor(), _nesting(), *_subids(), *_helpers(), _proc_sys(), *_network(), *_overlay(),
            _cgroup(), _seccomp(), _landlock()]


def _probe(body) -> str | None:
    """Run body() in a forked child (it may unshare); None when it worked, else the error it met."""
    from rootsand.errors import RootsandError
    from rootsand.runtime import child

    pid, report_r = child.start(lambda _report_w: body(), failed=None, where=None)
    try:
        status = child.wait(pid, report_r)
    except RootsandError as e:
        return e.message
    return None if status == 0 else "failed"


def _own_userns() -> None:
    uid, gid = os.geteuid(), os.getegid()
    libc.unshare(libc.CLONE_NEWUSER | libc.CLONE_NEWNS)
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")


def _userns() -> Check:
    error = _probe(lambda: libc.unshare(libc.CLONE_NEWUSER))
    if error is None:
        return Check("user namespaces", OK, "an unprivileged user namespace can be created")
    return Check("user namespaces", MISSING, f"unshare(CLONE_NEWUSER) failed: {error}", procfs.userns_hint())


def _apparmor() -> Check:
    if procfs.read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return Check("AppArmor", MISSING, "kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu 24.04): an "
                     "unconfined program's user namespace gets no capabilities, so no sandbox can be set up",
                     "as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (or give rootsand's "
                     "python an AppArmor profile with 'userns,')")
    return Check("AppArmor", OK, "no restriction of unprivileged user namespaces")


def _nesting() -> Check:
    reason = host.nesting()
    if reason is None:
        return Check("nesting", OK, "in the host's user namespace: the subordinate ranges can be mapped")
    ids = host.facts("none").nested_ids
    how = f"as {ids[0]}:{ids[1]} inside (root needs CAP_SETFCAP, which is not held)" if ids else "as root inside"
    return Check("nesting", DEGRADED, f"{reason}: a sandbox maps only your own id, {how}; no newuidmap, and "
                 "/dev/fuse and /dev/net/tun only where the outer sandbox or container lets them through",
                 "run rootsand outside it for the full subordinate range")


def _proc_sys() -> Check:
    if not host.mounted_with("/proc/sys", os.ST_RDONLY):
        return Check("/proc/sys", OK, "writable: the sandboxes' own settings go through their procfs")
    return Check("/proc/sys", DEGRADED, "read-only (a container or sandbox): the untrusted profile's "
                 "user.max_user_namespaces = 0 and the sysctl limits cannot be set, so seccomp alone blocks nested "
                 "user namespaces; slirp's IPv6 address waits 1-2 s for duplicate address detection",
                 "nothing needed; a container started with a writable /proc/sys gives both back")


def _subids() -> list[Check]:
    uid = os.getuid()
    name = host.user_name(uid)
    out = []
    nested = host.nesting()
    for path in ("/etc/subuid", "/etc/subgid"):
        ranges = idmap.read_subid(path, name, uid)
        if nested:
            out.append(Check(path, DEGRADED, "not used: inside another user namespace only your own id is mapped",
                             "run rootsand outside it for the full subordinate range"))
        elif uid == 0:
            out.append(Check(path, OK, "root writes its maps itself"))
        elif ranges:
            total = sum(r.count for r in ranges)
            out.append(Check(path, OK, f"{len(ranges)} range(s), {total} ids for {name}"))
        else:
            first = free_subid_start()
            out.append(Check(path, DEGRADED, f"no range for {name}: sandboxes map only your own id",
                             f"sudo usermod --add-subuids {first}-{first + 65535} --add-subgids {first}-{first + 65535} "
                             f"{name}  (a range no other line of /etc/subuid or /etc/subgid has: two users sharing "
                             "ids could change each other's build files)"))
    return out


def free_subid_start(size: int = 65536, low: int = 100000) -> int:
    """The lowest start of `size` ids, from `low` up, that no line of /etc/subuid or /etc/subgid overlaps (as
    useradd picks one): 100000, the usual example, is what useradd gives the first user."""
    taken = []
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for fields in (line.strip().split(":") for line in lines if not line.startswith("#")):
            if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                taken.append((int(fields[1]), int(fields[1]) + int(fields[2])))
    start = low
    while True:
        clash = [end for begin, end in taken if begin < start + size and start < end]
        if not clash:
            return start
        start = max(clash)


def _helpers() -> list[Check]:
    out = []
    for helper in ("newuidmap", "newgidmap"):
        path = host.find_helper(helper)
        if not path:
            out.append(Check(helper, DEGRADED, "not found: sandboxes map only your own id",
                             "install the 'uidmap' package"))
        elif host.nesting() or host.mounted_with(path, os.ST_NOSUID):
            why = host.nesting() or f"{path} is on a nosuid mount"
            out.append(Check(helper, DEGRADED, f"not usable here ({why}): sandboxes map only your own id",
                             "run rootsand outside this sandbox or container"))
        elif not maps.is_privileged_helper(path):
            out.append(Check(helper, MISSING, f"{path} is neither setuid root nor has file capabilities",
                             "reinstall the 'uidmap' package (or as root: chmod u+s " + path + ")"))
        else:
            out.append(Check(helper, OK, path))
    return out


def _device(path: str, what: str, status_if_bad: str) -> Check:
    if os.access(path, os.R_OK | os.W_OK):
        return Check(path, OK, f"usable ({what})")
    if not os.path.exists(path):
        if host.nesting():
            return Check(path, status_if_bad, f"does not exist ({what})",
                         f"the outer sandbox or container must let it through (rootsand: a dev-bind of {path})")
        return Check(path, status_if_bad, f"does not exist ({what})",
                     "load the kernel module; in a container, let the device through (e.g. --device)")
    return Check(path, status_if_bad, f"not readable and writable by you ({what})", f"as root: chmod 0666 {path}")


def _network() -> list[Check]:
    """The helper programs and devices of the network modes (config/netmodes.py)."""
    from rootsand.config.netmodes import MODES

    found = []
    for mode in MODES.values():
        if mode.helper:
            path = host.find_helper(mode.helper)
            found.append(Check(mode.helper, OK, path) if path else
                         Check(mode.helper, MISSING, f"not found: --net {mode.name} cannot work",
                               f"install the '{mode.package or mode.helper}' package"))
    devices = {}  # each device with the modes that need it
    for mode in MODES.values():
        for device in mode.devices:
            devices.setdefault(device, []).append(f"--net {mode.name}")
    return found + [_device(device, ", ".join(users), MISSING) for device, users in devices.items()]


def _overlay() -> list[Check]:
    def kernel_overlay():
        _own_userns()
        base = "/tmp"  # covered by a tmpfs in the probe's own mount namespace: nothing is made on the host
        libc.mount("tmpfs", base, "tmpfs", 0)
        for d in ("lower", "upper", "work", "merged"):
            os.mkdir(os.path.join(base, d))
        libc.mount("overlay", f"{base}/merged", "overlay", 0,
                   f"lowerdir={base}/lower,upperdir={base}/upper,workdir={base}/work,userxattr")

    error = _probe(kernel_overlay)
    if error is None:
        kernel = Check("kernel overlay", OK, "overlay mounts in a user namespace work (userxattr)")
    else:
        kernel = Check("kernel overlay", DEGRADED, f"not in a user namespace here ({error}): fuse-overlayfs is used",
                       "a kernel of 5.11 or later")
    fuse = host.find_helper("fuse-overlayfs")
    return [kernel,
            Check("fuse-overlayfs", OK, fuse) if fuse else
            Check("fuse-overlayfs", DEGRADED, "not found: overlays of directories owned by root (e.g. /usr/local) fail",
                  "install the 'fuse-overlayfs' package"),
            _device("/dev/fuse", "fuse-overlayfs", DEGRADED)]


def _cgroup() -> Check:
    found = cgroup.delegated_cgroup()
    if found and {"memory", "pids"} <= found[1]:
        return Check("cgroup v2", OK, f"delegated {found[0]} with {', '.join(sorted(found[1]))}")
    detail = (f"{found[0]} offers only {', '.join(sorted(found[1])) or 'no controllers'}" if found
              else "no writable cgroup v2 of yours")
    return Check("cgroup v2", DEGRADED, f"{detail}: memory and pids limits fall back to rlimits, cpu is not enforced",
                 "a systemd user session (Delegate=yes), or run from 'systemd-run --user --scope'")


def _seccomp() -> Check:
    from rootsand.errors import RootsandError
    from rootsand.security.seccomp.compile import prepare
    from rootsand.security.seccomp.rules import default_rules

    try:
        prepare(default_rules(nested_userns=True))
    except RootsandError as e:
        return Check("seccomp", MISSING, e.message, e.hint or "")
    return Check("seccomp", OK, "libseccomp builds the default filter")


def _landlock() -> Check:
    from rootsand.security.landlockrules import HANDLED, SCOPES, Ruleset, unsupported

    version = libc.landlock_abi()
    missing = unsupported(Ruleset(mode="on", handled=HANDLED, scopes=list(SCOPES)), version)
    if version == 0:
        return Check("landlock", DEGRADED, "the kernel has no Landlock: the profiles' landlock setting is not "
                     "enforced, the mounts and seccomp stand alone",
                     "Linux 6.12 or later with landlock among its LSMs (CONFIG_LSM, or lsm= on its command line)")
    if missing:
        return Check("landlock", DEGRADED, f"ABI {version}; not enforced: {', '.join(missing)}",
                     "a newer kernel (ABI 6, Linux 6.12: scopes)")
    return Check("landlock", OK, f"ABI {version}: file system rules and scopes (abstract Unix sockets, signals)")


def report(results: list[Check]) -> str:
    width = max(len(c.name) for c in results)
    lines = []
    for c in results:
        lines.append(f"{c.status:<9} {c.name:<{width}}  {c.detail}")
        if c.fix and c.status != OK:
            lines.append(f"{'':<9} {'':<{width}}  fix: {c.fix}")
    return "\n".join(lines)


def as_json(results: list[Check]) -> list[dict]:
    return [asdict(c) for c in results]
