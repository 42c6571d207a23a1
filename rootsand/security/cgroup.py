"""The sandbox's cgroup v2: the caller's delegated cgroup found, a child of it made with the plan's limits
(limits.Limits.cgroup), and removed again."""

import os

from rootsand.errors import RootsandError


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
