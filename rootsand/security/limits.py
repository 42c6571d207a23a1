"""What keeps the command in: capabilities, no_new_privs, a new session, rlimits and cgroup limits.

The planning functions are pure (unit-tested); the apply_* functions run in the command's process, in
this order, right before execve (see inside.py): rlimits, bounding set, ids, capabilities, no_new_privs,
then seccomp last.
"""

import os
import resource

from rootsand.config.model import Record
from rootsand.errors import RootsandError
from rootsand.linux import libc

CAP_KILL = 5

RLIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC, "fsize": resource.RLIMIT_FSIZE,
           "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS}


def last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


class Limits(Record):
    """How the profile's [limits] are enforced on this host."""

    __slots__ = ("rlimits", "cgroup", "not_enforced")
    FIELDS = {
        "rlimits": dict,  # name -> soft and hard limit (-1: unlimited)
        "cgroup": dict,  # cgroup v2 file -> value, when delegated
        "not_enforced": list,  # said once on stderr
    }


def plan_limits(memory: int | None, pids: int | None, cpu: float | None, rlimits: dict[str, int],
                cgroup_controllers: set[str]) -> Limits:
    """Cgroup v2 where a delegated cgroup offers the controller; else the rlimit that comes closest.

    memory -> RLIMIT_AS (address space, not resident memory), pids -> RLIMIT_NPROC (counted per user
    in the sandbox's own user namespace), cpu -> nothing: no rlimit shares a core.
    """
    plan = Limits(rlimits=dict(rlimits))
    fallbacks = []
    if memory is not None:
        if "memory" in cgroup_controllers:
            plan.cgroup["memory.max"] = str(memory)
            plan.cgroup["memory.swap.max"] = "0"
        else:
            plan.rlimits.setdefault("as", memory)
            fallbacks.append("memory as RLIMIT_AS, per process")
    if pids is not None:
        if "pids" in cgroup_controllers:
            plan.cgroup["pids.max"] = str(pids)
        else:
            plan.rlimits.setdefault("nproc", pids)
            fallbacks.append("pids as RLIMIT_NPROC")
    if cpu is not None:
        if "cpu" in cgroup_controllers:
            period = 100000
            plan.cgroup["cpu.max"] = f"{int(cpu * period)} {period}"
        else:
            plan.not_enforced.append(f"cpu = {cpu:g} is not enforced")
    if fallbacks:
        plan.not_enforced.insert(0, "no delegated cgroup v2 with these controllers: " + ", ".join(fallbacks))
    return plan


def describe_limits(limits: Limits, memory: int | None) -> list[str]:
    """What --verbose says about memory and the other limits: how each is enforced, and what is not."""
    lines = [f"{key} = {value} (cgroup v2)" for key, value in limits.cgroup.items()]
    lines += [f"RLIMIT_{name.upper()} = {'unlimited' if value < 0 else value}" for name, value in limits.rlimits.items()]
    if memory is not None and "memory.max" not in limits.cgroup:
        lines.append(f"memory without a cgroup: RLIMIT_AS counts each process's address space, not the sandbox's "
                     f"total (up to the process limit times it); memfd_create is refused, "
                     f"SysV shared memory is kept within {memory} bytes, each tmpfs (/tmp, /dev/shm, ...) is capped "
                     "at that size on its own; the page cache and kernel memory are not limited")
    return lines


def delegated_cgroup() -> tuple[str, set[str]] | None:
    """The caller's cgroup v2 directory and the controllers a child of it can use, when it is writable."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
        with open("/proc/self/mountinfo") as f:
            mounted = any(line.split(" - ")[1].startswith("cgroup2 ") and line.split()[4] == "/sys/fs/cgroup"
                          for line in f if " - " in line)
    except OSError:
        return None
    own = [line[3:] for line in lines if line.startswith("0::")]
    if not mounted or not own:
        return None
    path = os.path.normpath("/sys/fs/cgroup/" + own[0])
    try:
        with open(os.path.join(path, "cgroup.subtree_control")) as f:
            controllers = set(f.read().split())
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    return path, controllers & {"memory", "pids", "cpu"}


def make_cgroup(parent: str, name: str, settings: dict[str, str]) -> str:
    """A child cgroup with the sandbox's limits; removes those left by launchers that were killed."""
    from rootsand.ops.registry import stale_entries

    for stale in stale_entries(parent, "rootsand"):
        remove_cgroup(stale)
    path = os.path.join(parent, name)
    try:
        os.mkdir(path)
        for key, value in settings.items():
            with open(os.path.join(path, key), "w") as f:
                f.write(value)
    except OSError as e:
        remove_cgroup(path)
        raise RootsandError(f"cannot set up the cgroup {path}: {e.strerror}") from None
    return path


def remove_cgroup(path: str) -> None:
    """rmdir, which the kernel allows once no process is left in it (they may take a moment to go)."""
    import time

    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)


def apply_rlimits(rlimits: dict[str, int]) -> None:
    for name, value in rlimits.items():
        limit = resource.RLIM_INFINITY if value < 0 else value
        try:
            resource.setrlimit(RLIMITS[name], (limit, limit))
        except (ValueError, OSError) as e:
            raise RootsandError(f"cannot set the {name} limit to {value}: {e}") from None


def drop_bounding_set(keep: int) -> None:
    """Remove every capability not kept from the bounding set: no execve can bring it back."""
    for cap in range(last_cap() + 1):
        if not keep & (1 << cap):
            libc.prctl(libc.PR_CAPBSET_DROP, cap)


def set_capabilities(keep: int, ambient: bool) -> None:
    """Keep only `keep` in the effective, permitted and inheritable sets; raise them as ambient when the
    command runs as a non-root id (execve would drop them otherwise)."""
    libc.capset(keep, keep, keep if ambient else 0)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    if ambient:
        for cap in range(last_cap() + 1):
            if keep & (1 << cap):
                libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_RAISE, cap)


def no_new_privs() -> None:
    libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
