"""Reading /proc: a process's stat fields, its namespace links, its command line, our id map and the
files of /proc/sys (and what they say about user namespaces). Only reads; a process gone meanwhile is None
(or left out), never an error."""

import os
import re

_NS_LINK = re.compile(r"(\w+):\[(\d+)\]")  # what /proc/PID/ns/TYPE and an nsfs fd link to: "net:[4026531833]"


def read_sysctl(path: str) -> str | None:
    """The text of a small /proc file (a sysctl, /proc/self/status), stripped; None when it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def userns_hint() -> str:
    """Why creating a user namespace may have failed (the sysctls that decide it), and how to fix it."""
    if read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        return "user namespaces are disabled: run 'sysctl -w user.max_user_namespaces=28633' as root"
    if read_sysctl("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return "unprivileged user namespaces are disabled: run 'sysctl -w kernel.unprivileged_userns_clone=1' as root"
    if read_sysctl("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return ("AppArmor restricts unprivileged user namespaces: run "
                "'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0' as root, "
                "or give rootsand's python an AppArmor profile with 'userns,'")
    return "rootsand may be running in a container or under a seccomp filter that forbids unshare(2)"


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first), or [] when there is no
    such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # the name, in parentheses, may hold anything
    except (OSError, IndexError):
        return []


def _stat_field(pid: int, index: int) -> int | None:
    """Field `index` (counted after the command name) of /proc/PID/stat, or None when there is no such process."""
    try:
        return int(_stat_fields(pid)[index])
    except (ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (field 22), or None when there is no such process."""
    return _stat_field(pid, 19)


def live_start_time(pid: int) -> int | None:
    """start_time(pid) while the process runs; None for none, or for a zombie (dead, not yet waited for:
    where the parent of an orphan never waits, a killed launcher stays one)."""
    fields = _stat_fields(pid)
    return None if len(fields) < 20 or fields[0] in ("Z", "X", "x") else int(fields[19])


def parent_of(pid: int) -> int | None:
    """The parent pid of process `pid`, or None when there is no such process."""
    return _stat_field(pid, 1)


def exiting(pid: int) -> bool:
    """True while process `pid` is on its way out (the kernel's PF_EXITING in field 9): it has begun to exit and
    dropped, or is dropping, its namespaces and files, but may not be a zombie its parent can wait for yet."""
    flags = _stat_field(pid, 6)
    return flags is not None and bool(flags & 0x4)


def pids() -> list[str]:
    """The pids in /proc, as their directory names."""
    return [name for name in os.listdir("/proc") if name.isdigit()]


def cmdline(pid: int | str) -> list[str]:
    """The NUL-separated words of /proc/PID/cmdline (empty ones kept, the last one empty); OSError when the
    process is gone or unreadable."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return [word.decode(errors="replace") for word in f.read().split(b"\0")]


def parse_ns(text: str) -> tuple[str, int] | None:
    """(type, inode) of a namespace as the kernel names it ("net:[4026531833]"), None for anything else."""
    m = _NS_LINK.fullmatch(text)
    return (m.group(1), int(m.group(2))) if m else None


def ns_link(link_path: str) -> tuple[str, int] | None:
    """(type, inode) of what the link at `link_path` names (/proc/PID/ns/net, /proc/PID/fd/N) when it is a
    namespace; None when it is something else or cannot be read."""
    try:
        return parse_ns(os.readlink(link_path))
    except OSError:
        return None


def ns_inodes(pid: int | str, kinds) -> dict[str, int]:
    """The inodes of the namespaces `kinds` (link names: mnt, net, ...) of process `pid` (or PID/task/TID)
    that can be read."""
    found = {}
    for kind in kinds:
        link = ns_link(f"/proc/{pid}/ns/{kind}")
        if link:
            found[kind] = link[1]
    return found


def mountinfo(pid: int | str = "self") -> list[tuple[list[str], list[str]]]:
    """/proc/PID/mountinfo: per mount, its fields before the " - " and after it, as the kernel writes them
    (octal escapes kept); OSError when it cannot be read."""
    with open(f"/proc/{pid}/mountinfo") as f:
        return [(left.split(), right.split()) for left, _, right in (line.partition(" - ") for line in f)]


def limits(pid: int) -> list[str]:
    """The lines of /proc/PID/limits but its header; [] when it cannot be read."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            return [line.rstrip() for line in f][1:]
    except OSError:
        return []


def host_uid(uid: int) -> int:
    """The host's id for our `uid` (the same outside any user namespace), from /proc/self/uid_map."""
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, outside, count = (int(n) for n in line.split())
                if inside <= uid < inside + count:
                    return outside + uid - inside
    except (OSError, ValueError):
        pass
    return uid
