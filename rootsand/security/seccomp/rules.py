"""The seccomp filter installed in the command's process just before execve.

A deny list on top of ALLOW: it refuses what no ordinary program needs and what widens the kernel
surface a sandboxed command can reach (keyrings, kernel modules, kexec, bpf, TIOCSTI, ...); and, as the
profile says, rarely used socket families (security.socket_families, not with --net host), setuid and
setgid bits on files (security.setuid_bits), and memory that RLIMIT_AS does not count (memfds, large SysV
segments) where a memory limit has no memory cgroup to enforce it.

Two steps, because the launcher pivots the root away from site-packages before it execs:
`prepare(rules)` imports pyseccomp (libseccomp through ctypes, ~25 ms: never at start-up) and builds
the filter while the host's files are still visible; `install(prepared)` loads it, last, just before
execve. Everything else here is pure Python.
"""

from __future__ import annotations

import errno as errno_module
import os
import re
if False:  # for the type checkers only: importing typing costs start-up time on every run
    from typing import Any, NoReturn

from rootsand.config import tomlfile
from rootsand.config.model import Record
from rootsand.errors import RootsandError

OPS = ("EQ", "NE", "LT", "LE", "GT", "GE", "MASKED_EQ")
MAX_ERRNO = 4095  # the kernel treats -1..-4095 as errors
U64 = (1 << 64) - 1
OFF_HINT = 'set security.seccomp = "none" in the profile to run without the filter'

CLONE_NEWUSER = 0x10000000
ADDR_NO_RANDOMIZE = 0x0040000
READ_IMPLIES_EXEC = 0x0400000
S_ISUID, S_ISGID = 0o4000, 0o2000
SHMGET = 23  # ipc(2)'s call number for shmget
U32 = (1 << 32) - 1

# Rarely used socket families, refused unless a profile lists them in security.socket_families.
SOCKET_FAMILIES = {
    "AF_VSOCK": (40, "AF_VSOCK sockets: vsock ignores network namespaces (the hypervisor at CID 2, "
                     "the host's vsock ports)"),
    "AF_KCM": (41, "AF_KCM sockets: the kernel connection multiplexor, rarely used, a record of kernel bugs"),
    "AF_TIPC": (30, "AF_TIPC sockets: a cluster protocol, rarely used, a record of kernel bugs (CVE-2021-43267)"),
    "AF_ALG": (38, "AF_ALG sockets: the kernel crypto API, a large kernel attack surface (CVE-2019-8912)"),
}
# The argument that holds the new mode, for each call that can give a file a mode.
MODE_ARGS = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "open": 2, "openat": 3, "creat": 1,
             "mknod": 1, "mknodat": 2}
LEGACY_CALLS = ("chmod", "open", "creat", "mknod")  # not on aarch64, riscv64 and other new architectures


class Rule(Record):
    """One refusal: `syscall` returns `errno` when all of `args` match."""

    __slots__ = ("syscall", "errno", "args", "why", "direct", "optional")
    FIELDS = {
        "syscall": "",  # name, as libseccomp knows it
        "errno": 0,  # what the call returns instead of running
        # (index, op, datum_a, datum_b), all must match; for MASKED_EQ datum_a is the mask and datum_b the
        # value, for the other ops datum_b is unused (0)
        "args": (),
        "why": "",  # one line: what the rule stops
        # The arguments are the direct call's: leave the rule out where libseccomp routes the call through the
        # socketcall(2) or ipc(2) multiplexer (32-bit x86, s390, ppc), whose arguments are in memory.
        "direct": False,
        # Leave the rule out where no architecture of the filter has the call (open, chmod: not on aarch64).
        "optional": False,
    }

    @classmethod
    def from_json(cls, data: dict) -> "Rule":
        return super().from_json({**data, "args": tuple(tuple(arg) for arg in data.get("args", ()))})


# ---------------------------------------------------------------------------------------------- rules

def default_rules(nested_userns: bool, *, net_mode: str = "none", setuid_bits: bool = False,
                  socket_families: tuple[str, ...] = (), limit_memfd: bool = False,
                  shm_max: int | None = None) -> list[Rule]:
    """The default deny list; with nested_userns False it also stops new user namespaces.

    net_mode "host" lets every socket family through; otherwise those of SOCKET_FAMILIES not named in
    socket_families are refused. setuid_bits True lets files get setuid and setgid bits. limit_memfd
    refuses memfd_create and memfd_secret, and an integer shm_max refuses larger SysV shared memory segments:
    memory that RLIMIT_AS does not count, for sandboxes with a memory limit that no memory cgroup enforces.
    """
    unknown = [name for name in socket_families if name not in SOCKET_FAMILIES]
    if unknown:
        raise ValueError(f"unknown socket families {unknown}: expected some of {', '.join(SOCKET_FAMILIES)}")
    if shm_max is not None and (not isinstance(shm_max, int) or isinstance(shm_max, bool) or
                                not 0 <= shm_max <= U64):
        raise ValueError(f"shm_max must be bytes (0..2**64-1), got {shm_max!r}")
    import termios  # a built-in module: cheap, and the right TIOCSTI value on every architecture

    EPERM, ENOSYS = errno_module.EPERM, errno_module.ENOSYS
    tiocsti = termios.TIOCSTI
    tioclinux = getattr(termios, "TIOCLINUX", 0x541C)
    # The kernel truncates the request to 32 bits: an EQ rule is bypassed with high bits set
    # (CVE-2019-10063), so compare only the low 32 bits.
    rules = [
        Rule("ioctl", EPERM, ((1, "MASKED_EQ", 0xFFFFFFFF, tiocsti),),
             "TIOCSTI: typing into the caller's terminal (CVE-2017-5226)"),
        Rule("ioctl", EPERM, ((1, "MASKED_EQ", 0xFFFFFFFF, tioclinux),),
             "TIOCLINUX: copying and pasting on the caller's virtual console (CVE-2023-28100)"),
    ]
    plain = {
        "keyctl": "kernel keyrings are not namespaced: the host user's keys",
        "add_key": "kernel keyrings are not namespaced: the host user's keys",
        "request_key": "kernel keyrings are not namespaced: the host user's keys",
        "kexec_load": "loading a new kernel",
        "kexec_file_load": "loading a new kernel",
        "init_module": "loading kernel modules",
        "finit_module": "loading kernel modules",
        "delete_module": "unloading kernel modules",
        "bpf": "eBPF programs: a large kernel attack surface",
        "perf_event_open": "performance counters: side channels and kernel attack surface",
        "userfaultfd": "stalling the kernel on page faults, a staple of kernel exploits",
        "open_by_handle_at": "opening files by handle, past the mount tree (the shocker escape)",
        "acct": "process accounting, a host-wide setting",
        "swapon": "swap, a host-wide setting",
        "swapoff": "swap, a host-wide setting",
        "reboot": "rebooting (in a pid namespace it would kill the sandbox's init)",
        "io_uring_setup": "io_uring: a large kernel attack surface, and its calls pass by seccomp",
        "io_uring_enter": "io_uring: a large kernel attack surface, and its calls pass by seccomp",
        "io_uring_register": "io_uring: a large kernel attack surface, and its calls pass by seccomp",
    }
    rules += [Rule(name, EPERM, why=why) for name, why in plain.items()]
    rules += _personality_rules()
    if not nested_userns:
        # Without a nested user namespace the command has no capability that a mount call needs: the new
        # mount API is only kernel surface then (fsconfig: CVE-2022-0185). ENOSYS, not EPERM: libmount and
        # friends fall back to mount(2). With nested user namespaces (a sandbox inside, rootsand's own
        # mounts are built with this API) it stays: the nested namespace's capabilities reach as far anyway.
        for name in ("open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"):
            rules.append(Rule(name, ENOSYS, why="the new mount API, which mount(2)'s checks do not cover"))
        # s390 swaps clone's first two arguments: the flags come second.
        clone_flags = 1 if os.uname().machine.startswith("s390") else 0
        newuser = ("MASKED_EQ", CLONE_NEWUSER, CLONE_NEWUSER)
        rules += [
            Rule("unshare", EPERM, ((0, *newuser),), "new user namespaces (nested_userns = false)"),
            Rule("clone", EPERM, ((clone_flags, *newuser),), "new user namespaces (nested_userns = false)"),
            # clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back to clone.
            Rule("clone3", ENOSYS, why="clone3's flags cannot be checked; libc falls back to clone"),
        ]
    if net_mode != "host":  # with the host's network the user chose no network isolation
        rules += _socket_family_rules(socket_families)
    if not setuid_bits:
        rules += _setuid_rules()
    if limit_memfd:
        # ENOSYS, what a kernel without these calls says: programs that use memfds for speed (Wayland
        # clients, Mesa, PulseAudio, JITs) then fall back to a file in /dev/shm or a temporary directory,
        # which are size-capped tmpfs mounts. EPERM reads as a hard failure to code that checks for ENOSYS.
        memfd = "memory that RLIMIT_AS does not count, and no memory cgroup counts it here"
        rules += [Rule("memfd_create", ENOSYS, why=f"memfd_create: {memfd}; programs fall back to /dev/shm"),
                  Rule("memfd_secret", ENOSYS, why=f"memfd_secret: {memfd}")]
    if shm_max is not None:
        # EINVAL: what the kernel says for a size above kernel.shmmax. A segment outlives its process and
        # counts against RLIMIT_AS only while attached.
        why = f"SysV shared memory segments above {shm_max} bytes: memory that RLIMIT_AS does not count"
        rules.append(Rule("shmget", errno_module.EINVAL, ((1, "GT", shm_max, 0),), why, direct=True))
        # 32-bit x86 programs (and s390, ppc ones) call shmget through ipc(SHMGET, key, size, flags): there
        # the size is the third argument. (The direct x86 shmget, which glibc does not use there, stays open:
        # libseccomp cannot name it apart from the multiplexer.) ipc's call number is its low 16 bits.
        rules.append(Rule("ipc", errno_module.EINVAL, ((0, "MASKED_EQ", 0xFFFF, SHMGET), (2, "GT", shm_max, 0)),
                          why, optional=True))
    return rules


def _socket_family_rules(allowed: tuple[str, ...]) -> list[Rule]:
    """socket() and socketpair() of the rarely used families, refused with EAFNOSUPPORT: what a kernel without
    the family says, so programs fall back. socketpair too: it creates its sockets (and loads the family's
    module) before it finds that the family has no pairs.

    The domain is an int: the kernel reads 32 bits, so compare only those (high garbage bits must not get
    past). 32-bit x86 programs create sockets through socketcall(2), whose arguments are in memory that
    seccomp cannot read; libseccomp would turn these rules into ones that refuse every socketcall(SYS_SOCKET),
    which breaks all their networking. Like Docker's default profile, socketcall is left alone (direct=True:
    the rules are left out there, and for the direct x86 socket(2), which libseccomp cannot name apart from
    socketcall and which socketcall would get around anyway): a 32-bit x86 program can open these families.
    """
    rules = []
    for name, (family, why) in SOCKET_FAMILIES.items():
        if name not in allowed:
            for call in ("socket", "socketpair"):
                rules.append(Rule(call, errno_module.EAFNOSUPPORT, ((0, "MASKED_EQ", 0xFFFFFFFF, family),),
                                  f"{why} (security.socket_families = ['{name}'] allows them)", direct=True))
    return rules


def _setuid_rules() -> list[Rule]:
    """No setuid or setgid bits on files: one made in a host-backed writable mount (the current directory)
    keeps its mode on the host, where other local users could run it as its owner, the user or one of the
    user's subordinate ids. EPERM, what the kernel says to a chmod it does not allow.

    Seccomp cannot tell files from directories: `chmod g+s dir` (a shared group directory) is refused too,
    which breaks little in a sandbox (mkdir inherits a parent's setgid bit whatever its mode says). open,
    openat and creat are checked by their mode: glibc and musl pass 0 unless O_CREAT or O_TMPFILE, so a mode
    with these bits means a file being created with them. fchmodat2 (Linux 6.6) when libseccomp is older
    than it: see prepare(). The mode is 16 bits for the kernel: masks of single bits cannot be walked around.
    """
    rules = []
    for call, index in MODE_ARGS.items():
        for bit, what in ((S_ISUID, "setuid"), (S_ISGID, "setgid")):
            why = (f"{call}: {what} bits on files, which stay on the host in writable mounts, where other users "
                   f"could run them (security.setuid_bits = true allows them)")
            rules.append(Rule(call, errno_module.EPERM, ((index, "MASKED_EQ", bit, bit),), why,
                              optional=call in LEGACY_CALLS))
    # openat2 passes the mode in a struct that seccomp cannot read; glibc and systemd fall back to openat.
    rules.append(Rule("openat2", errno_module.ENOSYS,
                      why="openat2: its mode (setuid bits) cannot be checked; callers fall back to openat"))
    return rules


def _personality_rules() -> list[Rule]:
    """Refuse personality() with ADDR_NO_RANDOMIZE or READ_IMPLIES_EXEC, but let the query 0xffffffff through.

    libseccomp allows one comparison per argument, so "flag set and value != 0xffffffff" is written as
    "flag set and bit N clear", one rule for each other bit N of the low 32 bits (the kernel reads only
    those). A value with the flag set is the query only if every bit is set, so this is exact.
    """
    rules = []
    for flag, what in ((ADDR_NO_RANDOMIZE, "ADDR_NO_RANDOMIZE: turns off ASLR for the next program"),
                       (READ_IMPLIES_EXEC, "READ_IMPLIES_EXEC: makes readable memory executable")):
        for bit in range(32):
            if 1 << bit != flag:
                rules.append(Rule("personality", errno_module.EPERM,
                                  ((0, "MASKED_EQ", flag | 1 << bit, flag),), what))
    return rules


def rules_for(seccomp: str, nested_userns: bool, *, file_rules=(), net_mode: str = "none",
              setuid_bits: bool = False, socket_families: tuple[str, ...] = (), limit_memfd: bool = False,
              shm_max: int | None = None) -> list[Rule] | None:
    """The rules for a profile's `security.seccomp` ("default", "none" or a rule file's path, whose rules,
    read in the spec stage, are `file_rules`); None: no filter. The plan's only way to them.

    A rule file adds to the default rules: it can refuse more or change an errno, never allow what they refuse.
    The other keyword arguments are default_rules'.
    """
    if seccomp == "none":
        return None
    return default_rules(nested_userns, net_mode=net_mode, setuid_bits=setuid_bits,
                         socket_families=tuple(socket_families), limit_memfd=limit_memfd,
                         shm_max=shm_max) + list(file_rules)


# ---------------------------------------------------------------------------------------------- rule files

class _RuleFile:
    """A rule file's text, to point an error at the line of a `[[rule]]` table or of a key in it."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.locator = tomlfile.Locator(text)

    def line_of(self, index: int | None, key: str | None) -> int | None:
        parts = ("rule", index) if index is not None else ()
        return self.locator.line_of(parts + ((key,) if key else ()))

    def fail(self, message: str, index: int | None = None, key: str | None = None, sub: str = "",
             hint: str | None = None) -> NoReturn:
        line = self.line_of(index, key)
        where = f"seccomp rules {self.path}" + (f", line {line}" if line else "")
        what = ".".join(([f"rule[{index}]"] if index else []) + ([key] if key else [])) + sub  # rule[2].args[1].op
        text = f"{where}: {what}: {message}" if what else f"{where}: {message}"
        raise RootsandError(text.replace("\n", "\\n"), hint)


_type_name = tomlfile.type_name


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_rule_file(path: str) -> list[Rule]:
    """Rules from a TOML file of `[[rule]]` tables; every problem is a RootsandError naming file, line and key.

        [[rule]]
        syscall = "ptrace"
        errno = "EPERM"                  # a name from errno(3) or a number; EPERM when absent
        args = [{ index = 0, op = "MASKED_EQ", mask = 0x10000000, value = 0x10000000 }]
        why = "what it stops"            # optional
    """
    text, data = tomlfile.read(path, "seccomp rules")
    file = _RuleFile(path, text)
    for key in data:
        if key != "rule":
            file.fail(f"unknown key {key!r}", key=key, hint="a rule file holds [[rule]] tables")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        file.fail(f"expected [[rule]] tables, got {_type_name(tables)}", key="rule")
    arches = _known_arches() if tables else []
    return [_rule(file, index, table, arches) for index, table in enumerate(tables, 1)]


def _rule(file: _RuleFile, index: int, table: Any, arches: list[int]) -> Rule:
    if not isinstance(table, dict):
        file.fail(f"expected a table, got {_type_name(table)}", index)
    for key in table:
        if key not in ("syscall", "errno", "args", "why"):
            file.fail(f"unknown key {key!r}", index, key, hint="a rule takes syscall, errno, args and why")
    if "syscall" not in table:
        file.fail('missing key "syscall"', index)
    name = table["syscall"]
    if not isinstance(name, str):
        file.fail(f"expected a system call name, got {_type_name(name)}", index, "syscall")
    if not re.fullmatch(r"[a-z0-9_]{1,64}", name) or not _syscall_known(name, arches):
        file.fail(f"unknown system call {name!r}", index, "syscall", hint="names as in syscalls(2), like ptrace")
    why = table.get("why", "")
    if not isinstance(why, str):
        file.fail(f"expected a string, got {_type_name(why)}", index, "why")
    return Rule(name, _errno(file, index, table.get("errno", "EPERM")), _args(file, index, table.get("args", [])),
                why.replace("\n", " "))


def _errno(file: _RuleFile, index: int, value: Any) -> int:
    if isinstance(value, str):
        number = getattr(errno_module, value, None) if re.fullmatch(r"E[A-Z0-9]+", value) else None
        if not _is_int(number):
            file.fail(f"unknown errno name {value!r}", index, "errno", hint="names as in errno(3), like EPERM")
        return number
    if not _is_int(value):
        file.fail(f"expected an errno name or number, got {_type_name(value)}", index, "errno")
    if not 1 <= value <= MAX_ERRNO:
        file.fail(f"errno {value} is out of range 1..{MAX_ERRNO}", index, "errno")
    return value


def _args(file: _RuleFile, index: int, value: Any) -> tuple[tuple[int, str, int, int], ...]:
    if not isinstance(value, list):
        file.fail(f"expected an array of tables, got {_type_name(value)}", index, "args")
    out: list[tuple[int, str, int, int]] = []
    for n, arg in enumerate(value, 1):
        def fail(message: str, key: str = "", hint: str | None = None) -> NoReturn:
            file.fail(message, index, "args", f"[{n}]" + (f".{key}" if key else ""), hint)

        if not isinstance(arg, dict):
            fail(f"expected a table, got {_type_name(arg)}")
        for key in arg:
            if key not in ("index", "op", "value", "mask"):
                fail(f"unknown key {key!r}", key, "an argument takes index, op, value and (for MASKED_EQ) mask")
        for key in ("index", "op", "value"):
            if key not in arg:
                fail(f'missing key "{key}"')
        number = arg["index"]
        if not _is_int(number) or not 0 <= number <= 5:
            fail(f"expected an argument index 0..5, got {number!r}", "index")
        if any(number == earlier[0] for earlier in out):
            fail(f"argument {number} is compared twice; libseccomp allows one comparison per argument", "index")
        op = arg["op"]
        if op not in OPS:
            fail(f"unknown operator {op!r}", "op", f"one of {', '.join(OPS)}")
        for key in ("value", "mask"):
            if key in arg and (not _is_int(arg[key]) or not 0 <= arg[key] <= U64):
                fail(f"expected an integer 0..2**64-1, got {arg[key]!r}", key)
        if op == "MASKED_EQ":
            if "mask" not in arg:
                fail('missing key "mask": MASKED_EQ compares (argument & mask) with value')
            out.append((number, op, arg["mask"], arg["value"]))
        else:
            if "mask" in arg:
                fail("mask is only for MASKED_EQ", "mask")
            out.append((number, op, arg["value"], 0))
    return tuple(out)


# ---------------------------------------------------------------------------------------------- libseccomp

# pyseccomp finds its libraries with ctypes.util.find_library, which runs `ldconfig -p` (and maybe gcc)
# in a subprocess: ~10 ms and two processes inside the sandbox; importing ctypes.util alone costs ~4 ms
# (subprocess, shutil, tempfile). The sonames are stable: pyseccomp is imported with a stand-in ctypes.util
# that knows them, and the real module only when they are not there. Its annotations import typing
# (~2.5 ms, nothing else on the run path needs it): they get a stand-in too, unless typing is loaded.
_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}


class _AnyType:
    """Stands for every name pyseccomp takes from typing: subscripted in annotations, never checked."""

    def __getitem__(self, _item):
        return self


def _typing_stand_in():
    import types

    module = types.ModuleType("typing")
    module.Any = module.Collection = module.Iterable = module.Union = _AnyType()
    module.cast = lambda _type, value: value
    module.overload = lambda function: function
    return module


def _import_pyseccomp():
    import ctypes
    import sys
    import types

    if "pyseccomp" not in sys.modules:
        real = sys.modules.get("ctypes.util")
        stand_in = types.ModuleType("ctypes.util")
        stand_in.find_library = lambda name: _SONAMES.get(name)
        sys.modules["ctypes.util"] = stand_in
        ctypes.util = stand_in
        own_typing = "typing" not in sys.modules
        if own_typing:
            sys.modules["typing"] = _typing_stand_in()
        try:
            import pyseccomp  # noqa: F401
        except (OSError, ImportError, AttributeError):  # a missing soname; a pyseccomp wanting more of typing
            sys.modules.pop("pyseccomp", None)
        finally:
            if own_typing:
                del sys.modules["typing"]
            if real is not None:
                sys.modules["ctypes.util"] = ctypes.util = real
            else:
                del sys.modules["ctypes.util"], ctypes.util
    try:
        import pyseccomp
    except (ImportError, RuntimeError, OSError) as e:  # RuntimeError: pyseccomp found no libseccomp
        raise RootsandError(f"the seccomp filter needs libseccomp and pyseccomp: {e}",
                            f"install libseccomp2 (Debian: apt install libseccomp2); or {OFF_HINT}") from None
    return pyseccomp


def _arches(pyseccomp) -> list[int]:
    """The native architecture and the compat ones whose programs this kernel can run."""
    arch = pyseccomp.Arch
    native = pyseccomp.system_arch()
    compat = {arch.X86_64: [arch.X86, arch.X32], arch.AARCH64: [arch.ARM]}.get(native, [])
    return [native] + compat


def _known_arches() -> list[int]:
    return _arches(_import_pyseccomp())


def _resolve(pyseccomp, arch: int, name: str) -> int:
    """libseccomp's number for `name` on `arch`: negative where it has none (or a multiplexer's pseudo-number)."""
    return pyseccomp.resolve_syscall(arch, name)


def _multiplexed(number: int) -> bool:
    """libseccomp's pseudo-numbers for the calls it routes through socketcall(2) (-100..-120) or ipc(2)
    (-200..-224): it rewrites a rule on them into one on the multiplexer, keeping the argument indexes
    (so a rule on socket's domain would compare socketcall's call number, and refuse every socket)."""
    return -120 <= number <= -100 or -224 <= number <= -200


def _is_32bit(arch: int) -> bool:
    """libseccomp compares 32-bit arguments on these (x86, x32, arm, mips n32, ...), truncating wider data."""
    return not arch & 0x80000000 or bool(arch & 0x20000000)  # __AUDIT_ARCH_64BIT; mips64's N32 convention


# Calls newer than some libseccomp 2.5 releases: fchmodat2 came in 2.5.5 (Debian 12's 2.5.4-1+deb12u1 has it,
# Ubuntu 22.04's 2.5.3 does not, on kernels up to 6.8). Since Linux 5.1 a new call has one number on every
# architecture but MIPS, alpha and ia64. Each comes with arguments the kernel refuses before doing anything,
# to ask the kernel whether it has the call at all.
_NEW_CALLS = {
    "openat2": (437, (-1, 0, 0, 0)),  # usize 0: EINVAL
    "memfd_secret": (447, (0xFFFFFFFF,)),  # unknown flags: EINVAL (ENOSYS when secretmem is off)
    "fchmodat2": (452, (-1, 0, 0, 0xFFFFFFFF)),  # unknown flags: EINVAL
}
_UNIFIED_NUMBERS = ("X86_64", "X86", "AARCH64", "ARM", "RISCV64", "S390X", "S390", "PPC64LE", "PPC64", "PPC")


def _new_call_number(pyseccomp, name: str) -> int | None:
    """The native number of a call from _NEW_CALLS, where that number is the unified one; else None."""
    if name not in _NEW_CALLS:
        return None
    native = pyseccomp.system_arch()
    if not any(getattr(pyseccomp.Arch, arch, None) == native for arch in _UNIFIED_NUMBERS):
        return None
    return _NEW_CALLS[name][0]


def _kernel_has(name: str) -> bool:
    """False when the kernel says ENOSYS to the call (with arguments it refuses before doing anything)."""
    import ctypes

    number, args = _NEW_CALLS[name]
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a if a < 1 << 63 else a - (1 << 64))
                                                    for a in args))
    return not (result == -1 and ctypes.get_errno() == errno_module.ENOSYS)


def _syscall_known(name: str, arches: list[int]) -> bool:
    """True when libseccomp has a number for `name` on one of the filter's architectures (or prepare() can
    add it by number: a call from _NEW_CALLS)."""
    import pyseccomp

    return (any(_resolve(pyseccomp, arch, name) >= 0 for arch in arches)
            or _new_call_number(pyseccomp, name) is not None)


def _fit_32bit(args: tuple[tuple[int, str, int, int], ...]) -> tuple[tuple[int, str, int, int], ...] | None:
    """The comparisons as they hold for 32-bit arguments; None when no 32-bit argument can match.

    libseccomp 2.5 truncates a datum to 32 bits on 32-bit architectures without a word: `arg1 GT 8G`
    would become `arg1 GT 0` there. A comparison that every 32-bit value passes is dropped instead.
    """
    out = []
    for index, op, a, b in args:
        if op == "MASKED_EQ":
            if b > U32 or b & ~a:
                return None
            out.append((index, op, a & U32, b))
        elif a <= U32:
            out.append((index, op, a, b))
        elif op in ("EQ", "GT", "GE"):
            return None
        # NE, LT, LE a value above 32 bits: every 32-bit argument passes
    return tuple(out)


def _plan(pyseccomp, rules: list[Rule], arches: list[int]) -> dict[int, list[tuple[int | str, int, tuple]]]:
    """For each architecture, what to add to its filter: (name or native number, errno, arguments)."""
    native = arches[0]
    plans: dict[int, list[tuple[int | str, int, tuple]]] = {arch: [] for arch in arches}
    last: dict[tuple, Rule] = {}
    for rule in rules:  # the later of two rules with the same call and arguments wins (a dict keeps the place)
        key = (rule.syscall, tuple(sorted(rule.args)))
        if key in last:  # a rule file changing a default rule's errno keeps how it is placed
            rule = rule.replace(direct=rule.direct or last[key].direct, optional=rule.optional or last[key].optional)
        last[key] = rule
    for rule in last.values():
        numbers = {arch: _resolve(pyseccomp, arch, rule.syscall) for arch in arches}
        known = [arch for arch in arches if numbers[arch] >= 0 or _multiplexed(numbers[arch])]
        if not known:
            number = _new_call_number(pyseccomp, rule.syscall)
            if rule.optional:
                continue
            if number is None:
                # Fail closed: an old libseccomp that lacks e.g. clone3 would leave a hole, not a smaller filter.
                raise RootsandError(f"seccomp rule for {rule.syscall}: libseccomp does not know this system call",
                                    f"upgrade libseccomp2 (2.5 or later); or {OFF_HINT}")
            # A libseccomp older than the call. A kernel without it needs no rule; one with it gets the rule
            # by number on the native architecture (libseccomp cannot name it for the compat ones, whose
            # programs can still make the call: upgrade libseccomp to close that).
            if _kernel_has(rule.syscall):
                args = _fit_32bit(rule.args) if _is_32bit(native) else rule.args
                if args is not None:
                    plans[native].append((number, rule.errno, args))
            continue
        for arch in known:
            if _multiplexed(numbers[arch]) and rule.direct and rule.args:
                continue  # see Rule.direct
            args = _fit_32bit(rule.args) if _is_32bit(arch) else rule.args
            if args is not None:
                plans[arch].append((rule.syscall, rule.errno, args))
    return plans


def prepare(rules: list[Rule], native_only: bool = False) -> Any:
    """Build (not load) the filter: ALLOW, except what the rules refuse. Call it while site-packages is visible.

    The filter covers the native architecture and its compat ones (x86 and x32 on x86-64, arm on aarch64),
    so a 32-bit program cannot walk around it; a system call that an architecture lacks is left out there,
    and so is a rule with `direct` arguments where the call goes through a multiplexer (see Rule.direct).
    When two rules have the same system call and arguments the later one wins (a rule file can change
    a default rule's errno); a rule without arguments covers every call of that system call.

    Architectures whose rules differ get filters of their own, merged into one: libseccomp adds a rule to
    every architecture of a filter. With native_only, a call through any other ABI (a 32-bit program, or
    `int $0x80` from a 64-bit one) kills the thread: socketcall(2) passes its arguments in memory, where no
    rule can check the socket family.
    """
    pyseccomp = _import_pyseccomp()
    arches = _arches(pyseccomp)[:1] if native_only else _arches(pyseccomp)
    plans = _plan(pyseccomp, rules, arches)
    groups: dict[tuple, list[int]] = {}  # architectures with the same rules share a filter; native's first
    for arch in arches:
        groups.setdefault(tuple(plans[arch]), []).append(arch)
    filters = [_build(pyseccomp, group, list(plan), arches[0]) for plan, group in groups.items()]
    for other in filters[1:]:
        try:
            filters[0].merge(other)
        except OSError as e:
            raise RootsandError(f"cannot create the seccomp filter: merging: {e.strerror}", OFF_HINT) from None
    return filters[0]


def _build(pyseccomp, arches: list[int], plan: list[tuple[int | str, int, tuple]], native: int) -> Any:
    try:
        f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for arch in arches:
            if arch != native:
                f.add_arch(arch)
        if native not in arches:
            f.remove_arch(native)
    except OSError as e:
        raise RootsandError(f"cannot create the seccomp filter: {e.strerror}", OFF_HINT) from None
    try:
        # A binary tree of system call numbers: every call the command makes passes through the filter.
        f.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass  # libseccomp before 2.5: a linear list, slower but the same rules
    for syscall, errno, args in plan:
        cmp = [pyseccomp.Arg(index, getattr(pyseccomp, op), a, b) for index, op, a, b in args]
        try:
            # By name: libseccomp translates it for each architecture (by number: the native one only).
            f.add_rule(pyseccomp.ERRNO(errno), syscall, *cmp)
        except (OSError, ValueError) as e:
            detail = e.strerror if isinstance(e, OSError) else str(e)
            raise RootsandError(f"seccomp rule for {_rule_text(Rule(str(syscall), errno, args))}: "
                                f"libseccomp refused it: {detail}", OFF_HINT) from None
    return f


def _rule_text(rule: Rule) -> str:
    """Like "ioctl(arg1 & 0xffffffff == 0x5412)"."""
    args = ", ".join(f"arg{i} & {a:#x} == {b:#x}" if op == "MASKED_EQ" else f"arg{i} {op} {a:#x}"
                     for i, op, a, b in rule.args)
    return f"{rule.syscall}({args})"


def install(prepared: Any) -> None:
    """Load the filter into this process (and what it execs). libseccomp sets no_new_privs first."""
    try:
        prepared.load()
    except OSError as e:
        hints = {
            errno_module.EACCES: "loading a filter needs no_new_privs or CAP_SYS_ADMIN; "
                                 f"set security.no_new_privs = true; or {OFF_HINT}",
            errno_module.EINVAL: f"the kernel may lack seccomp filters (CONFIG_SECCOMP_FILTER); {OFF_HINT}",
        }
        raise RootsandError(f"cannot install the seccomp filter: {e.strerror or e}",
                            hints.get(e.errno, OFF_HINT)) from None
