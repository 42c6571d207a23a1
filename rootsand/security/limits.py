"""How a profile's [limits] are enforced on a host: cgroup v2 limits where a delegated cgroup offers the
controller, else the rlimit that comes closest. Pure planning (unit-tested); cgroup.py makes the cgroup, and
caps.py sets the rlimits in the command's process.
"""

from rootsand.config.model import Record


class Limits(Record):
    """How the profile's [limits] are enforced on this host."""

    __slots__ = ("rlimits", "cgroup", "not_enforced")
    FIELDS = {
        "rlimits": dict,  # name -> soft and hard limit (-1: unlimited)
        "cgroup": dict,  # cgroup v2 file -> value, when delegated
        "not_enforced": list,  # said once on stderr
    }


def plan_limits(memory: int | None, pids: int | None, cpu: float | None, rlimits: dict[str, int],
                cgroup_controllers: set[str], data_limit_ignored: bool = False) -> Limits:
    """Cgroup v2 where a delegated cgroup offers the controller; else the rlimit that comes closest.

    memory -> RLIMIT_DATA: the memory a process can write to (heap, brk, private anonymous and
    copy-on-write mappings, thread stacks), not the address space it reserves (PROT_NONE, which V8, Go
    and the JVM reserve by the gigabyte and RLIMIT_AS would count); pids -> RLIMIT_NPROC (counted per user
    in the sandbox's own user namespace), cpu -> nothing: no rlimit shares a core. Where the kernel was booted
    with ignore_rlimit_data (data_limit_ignored), memory -> RLIMIT_AS after all: a limit that holds.
    """
    plan = Limits(rlimits=dict(rlimits))
    fallbacks = []
    if memory is not None:
        if "memory" in cgroup_controllers:
            plan.cgroup["memory.max"] = str(memory)
            plan.cgroup["memory.swap.max"] = "0"
        else:
            name = "as" if data_limit_ignored else "data"
            plan.rlimits.setdefault(name, memory)
            fallbacks.append(f"memory as RLIMIT_{name.upper()}, per process"
                             + (" (the kernel ignores RLIMIT_DATA: ignore_rlimit_data)" if data_limit_ignored else ""))
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
        lines.append(f"memory without a cgroup: RLIMIT_DATA counts the memory each process can write to (not the "
                     f"address space it only reserves), not the sandbox's total (up to the process limit times "
                     f"it); memfd_create is refused, shared anonymous mappings above {memory} bytes are refused, "
                     f"SysV shared memory is kept within {memory} bytes, each tmpfs (/tmp, /dev/shm, ...) is capped "
                     "at that size on its own; the page cache and kernel memory are not limited")
    return lines
