"""The plan's seccomp rules (security/seccomp/rules.py: data) as the seccomp object of the OCI runtime
specification (config.json's linux.seccomp), which is also the JSON that podman (--security-opt seccomp=),
Docker and Kubernetes (seccompProfile: Localhost) load.

Pure: rules in, a dict out. The rules keep their meaning: ALLOW by default, each rule an ERRNO action with
its own errno, the arguments of one rule all to match (runc and crun AND the conditions of one entry when
their indexes differ, which they do in every rule rootsand makes), MASKED_EQ with the mask in `value` and
the compared value in `valueTwo`. Rules with the same errno and arguments share one entry.
"""

from rootsand.errors import RootsandError

# The filter's architectures for a machine (os.uname().machine): the native one and the compat ones whose
# programs its kernel runs, as security/seccomp/compile.py covers them (a 32-bit program must not walk
# around the filter).
ARCHES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
}
# The compat architectures where libseccomp routes socket(2) and shmget(2) through the socketcall(2) and
# ipc(2) multiplexers, whose arguments are in memory: a rule with arguments on them turns into one on the
# multiplexer's call number, which refuses more (rules.Rule.direct; rootsand leaves such rules out there,
# OCI has no way to leave a rule out on one architecture of the filter).
MULTIPLEXED = {"SCMP_ARCH_X86", "SCMP_ARCH_S390", "SCMP_ARCH_PPC"}
OPS = {"EQ": "SCMP_CMP_EQ", "NE": "SCMP_CMP_NE", "LT": "SCMP_CMP_LT", "LE": "SCMP_CMP_LE", "GT": "SCMP_CMP_GT",
       "GE": "SCMP_CMP_GE", "MASKED_EQ": "SCMP_CMP_MASKED_EQ"}


def architectures(machine: str, compat: bool) -> list[str]:
    """The filter's architectures on `machine`; `compat` False (security.compat_syscalls = false): the native
    one only, so a call through another ABI meets the runtime's bad-architecture action (a kill)."""
    if machine not in ARCHES:
        raise RootsandError(f"seccomp export: no architecture names known for machine {machine!r}",
                            f"known: {', '.join(ARCHES)}")
    return ARCHES[machine] if compat else ARCHES[machine][:1]


def _arg(index: int, op: str, a: int, b: int) -> dict:
    """One condition. MASKED_EQ: the rule's datum_a is the mask, datum_b the value; OCI's `value` is the
    mask and `valueTwo` the value too (libseccomp's datum_a and datum_b, as runc and crun pass them)."""
    return {"index": index, "value": a, "valueTwo": b if op == "MASKED_EQ" else 0, "op": OPS[op]}


def seccomp_object(rules: list, machine: str, compat: bool = True, comments: bool = False) -> dict:
    """The OCI linux.seccomp object for `rules` (a Plan's seccomp list). `comments`: each entry also says
    why, as Docker's and podman's profile format allows (the OCI runtime specification has no such field)."""
    last = {}
    for rule in rules:  # the later of two rules with the same call and arguments wins, as compile.py does
        last[(rule.syscall, tuple(sorted(tuple(a) for a in rule.args)))] = rule
    entries: dict[tuple, dict] = {}
    for rule in last.values():
        key = (rule.errno, tuple(tuple(a) for a in rule.args), rule.why if comments else "")
        entry = entries.get(key)
        if entry is None:
            entry = entries[key] = {"names": [], "action": "SCMP_ACT_ERRNO", "errnoRet": rule.errno}
            if rule.args:
                entry["args"] = [_arg(*arg) for arg in rule.args]
            if comments:
                entry["comment"] = rule.why
        entry["names"].append(rule.syscall)
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": architectures(machine, compat),
            "syscalls": list(entries.values())}


def differences(rules: list, machine: str, compat: bool = True) -> list[str]:
    """What the exported filter does otherwise than rootsand's own, one line each (said on stderr)."""
    multiplexed = sorted(set(architectures(machine, compat)) & MULTIPLEXED)
    calls = sorted({rule.syscall for rule in rules if rule.direct and rule.args})
    if not multiplexed or not calls:
        return []
    return [f"seccomp: on {', '.join(a.removeprefix('SCMP_ARCH_') for a in multiplexed)} (32-bit programs) the "
            f"rules with arguments on {', '.join(calls)} become rules on the socketcall(2)/ipc(2) multiplexer, "
            f"which refuse more than rootsand does (every socket(2) of such a program)"]
