"""Facts about the host that decide how a sandbox can be built. `rootsand doctor` reports them too."""

import os
import pwd
import stat

HELPER_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin")


def facts(net_mode: str):
    """This host's facts for the plan stage (plan.HostFacts): reads only, nothing made or changed."""
    from rootsand import idmap, security
    from rootsand.plan import HostFacts

    uid, gid = os.getuid(), os.getgid()
    name = user_name(uid)
    cgroup = security.delegated_cgroup()
    resolv = ""
    if net_mode == "slirp":
        try:
            with open("/etc/resolv.conf") as f:
                resolv = f.read()
        except OSError:
            pass
    inotify = [read_sysctl(f"/proc/sys/fs/inotify/max_user_{n}") for n in ("instances", "watches")]
    return HostFacts(
        uid=uid, gid=gid, user_name=name, pid=os.getpid(),
        subuids=idmap.read_subid("/etc/subuid", name, uid), subgids=idmap.read_subid("/etc/subgid", name, uid),
        newuidmap=find_helper("newuidmap"), newgidmap=find_helper("newgidmap"),
        cgroup_dir=cgroup[0] if cgroup else None, cgroup_controllers=sorted(cgroup[1]) if cgroup else [],
        resolv_conf=resolv,
        inotify_instances=int(inotify[0]) if inotify[0] and inotify[0].isdigit() else None,
        inotify_watches=int(inotify[1]) if inotify[1] and inotify[1].isdigit() else None,
        page_size=os.sysconf("SC_PAGE_SIZE"), last_cap=security.last_cap())


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


def is_privileged_helper(path: str) -> bool:
    """True when a newuidmap/newgidmap binary can do its job: setuid root, or file capabilities."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_mode & stat.S_ISUID and st.st_uid == 0:
        return True
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False


def read_sysctl(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def userns_hint() -> str:
    """Why creating a user namespace may have failed, and how to fix it."""
    if read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        return "user namespaces are disabled: run 'sysctl -w user.max_user_namespaces=28633' as root"
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "unprivileged user namespaces are disabled: run 'sysctl -w kernel.unprivileged_userns_clone=1' as root"
    if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces: run "
                "'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0' as root, "
                "or give rootsand's python an AppArmor profile with 'userns,'")
    return "rootsand may be running in a container or under a seccomp filter that forbids unshare(2)"
