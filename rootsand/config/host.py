"""Facts about the host that decide how a sandbox can be built. `rootsand doctor` reports them too."""

import os
import pwd

from rootsand.config.model import CAPABILITIES
from rootsand.linux.procfs import read_sysctl

HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")


def facts(net_mode: str):
    """This host's facts for the plan stage (plan.HostFacts): reads only, nothing made or changed."""
    from rootsand.config import idmap
    from rootsand.config import netmodes
    from rootsand.config.plan import HostFacts
    from rootsand.security import caps, cgroup as cgroups

    uid, gid = os.getuid(), os.getgid()
    name = user_name(uid)
    cgroup = cgroups.delegated_cgroup()
    resolv = ""
    if netmodes.entry(net_mode).resolv_conf:  # the sandbox's own is made from it
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read()
        except OSError:
            pass
    inotify = [read_sysctl(f"/proc/sys/fs/inotify/max_user_{n}") for n in ("instances", "watches")]
    return HostFacts(
        uid=uid, gid=gid, pid=os.getpid(),
        subuids=idmap.read_subid("/etc/subuid", name, uid), subgids=idmap.read_subid("/etc/subgid", name, uid),
        newuidmap=find_helper("newuidmap"), newgidmap=find_helper("newgidmap"),
        cgroup_dir=cgroup[0] if cgroup else None, cgroup_controllers=sorted(cgroup[1]) if cgroup else [],
        resolv_conf=resolv,
        inotify_instances=int(inotify[0]) if inotify[0] and inotify[0].isdigit() else None,
        inotify_watches=int(inotify[1]) if inotify[1] and inotify[1].isdigit() else None,
        page_size=os.sysconf("SC_PAGE_SIZE"), last_cap=caps.last_cap(), nested=nesting(),
        nested_ids=_ids_without_setfcap(), arch=arch(),
        # booted with ignore_rlimit_data: the kernel only logs a process past RLIMIT_DATA
        data_limit_ignored=read_sysctl("/sys/module/kernel/parameters/ignore_rlimit_data") == "Y",
        net_auto=netmodes.auto_mode(find_helper) if net_mode == "auto" else None)


def arch():
    """What the seccomp rules depend on in this architecture (seccomp.rules.HostArch)."""
    import termios  # a built-in module: cheap, and the right ioctl numbers on every architecture

    from rootsand.security.seccomp.rules import HostArch

    return HostArch(machine=os.uname().machine, tiocsti=termios.TIOCSTI,
                    tioclinux=getattr(termios, "TIOCLINUX", 0x541C))


def nesting() -> str | None:
    """Why the setuid helpers cannot map subordinate ids here, or None: inside a user namespace other than
    the host's (a sandbox, a rootless container), or with no_new_privs set (setuid gains nothing)."""
    uid_map = read_sysctl("/proc/self/uid_map") or ""
    if uid_map.split() != ["0", "0", "4294967295"]:
        return "running inside another user namespace (a sandbox or container)"
    status = read_sysctl("/proc/self/status") or ""
    if any(line.split() == ["NoNewPrivs:", "1"] for line in status.splitlines()):
        return "no_new_privs is set, so the setuid newuidmap gains nothing"
    return None


CAP_SETFCAP = CAPABILITIES.index("CAP_SETFCAP")


def _ids_without_setfcap() -> list[int] | None:
    """Inside a user namespace without CAP_SETFCAP, root cannot be mapped in a new one: the ids to map
    ourselves to instead, the host's for us (what `id` says on the host), or None where 0 can be mapped."""
    status = read_sysctl("/proc/self/status") or ""
    caps = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:")), 0)
    if caps & (1 << CAP_SETFCAP) or nesting() is None:
        return None
    ids = []
    for kind, own in (("uid", os.getuid()), ("gid", os.getgid())):
        found = own
        for line in (read_sysctl(f"/proc/self/{kind}_map") or "").splitlines():
            inside, outside, count = (int(n) for n in line.split())
            if inside <= own < inside + count:
                found = outside + own - inside
        ids.append(found if found != 0 else 65534)
    return ids


def mounted_with(path: str, flag: int) -> bool:
    """True when the file system of `path` is mounted with `flag` (os.ST_RDONLY, os.ST_NOSUID, ...)."""
    try:
        return bool(os.statvfs(path).f_flag & flag)
    except OSError:
        return False


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return os.environ.get("USER", str(uid))


def find_helper(name: str) -> str | None:
    """A helper binary from the system directories, never from PATH: a PATH entry a sandbox can write
    (./.venv/bin, node_modules/.bin) would run its program on the host. ROOTSAND_HELPER_PATH replaces the
    list, for unusual installs and tests."""
    dirs = (os.environ.get("ROOTSAND_HELPER_PATH") or os.pathsep.join(HELPER_DIRS)).split(os.pathsep)
    for directory in dirs:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):  # shutil.which's test, without its imports
            return path
    return None
