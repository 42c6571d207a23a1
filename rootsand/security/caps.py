"""What keeps the command in, applied in its own process: rlimits, the capability bounding set, the
capabilities it keeps, and no_new_privs. They run in this order right before execve (see inside.py), then
seccomp last.
"""

import resource

from rootsand.config.model import CAPABILITIES
from rootsand.errors import RootsandError
from rootsand.linux import libc

CAP_KILL = CAPABILITIES.index("CAP_KILL")

RLIMITS = {"nofile": resource.RLIMIT_NOFILE, "nproc": resource.RLIMIT_NPROC, "fsize": resource.RLIMIT_FSIZE,
           "core": resource.RLIMIT_CORE, "cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS,
           "data": resource.RLIMIT_DATA}


def last_cap() -> int:
    """The highest capability number this kernel knows (40, CAP_CHECKPOINT_RESTORE, where it does not say)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 40


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
