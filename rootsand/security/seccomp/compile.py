"""The seccomp filter: rules (rules.py) built into a filter by libseccomp, and installed in the command's process.

Two steps, because the launcher pivots the root away from the host's libraries before it execs:
`prepare(rules)` loads libseccomp and builds the filter while the host's files are still visible;
`install(prepared)` loads it, last, just before execve. libseccomp is used through ctypes on its stable
soname, loaded on the first prepare() (never at start-up: a sandbox without a filter never loads it).
"""

import ctypes
import errno as errno_module
import functools
import os

from rootsand.errors import RootsandError
from rootsand.linux import libc
from rootsand.security.seccomp.rules import U32, Rule

OFF_HINT = 'set security.seccomp = "none" in the profile to run without the filter'
SONAME = "libseccomp.so.2"

# From libseccomp's seccomp.h: the actions, the comparison operators and a filter attribute.
ACT_ALLOW = 0x7FFF0000
ACT_ERRNO = 0x00050000  # | the errno, in the low 16 bits
OPS = {"NE": 1, "LT": 2, "LE": 3, "EQ": 4, "GE": 5, "GT": 6, "MASKED_EQ": 7}
ATTR_CTL_OPTIMIZE = 8
# Its architecture tokens are the kernel's AUDIT_ARCH_* values: the ELF machine, 64-bit, little-endian.
_64, _LE = 0x80000000, 0x40000000
ARCHES = {"X86": 3 | _LE, "X86_64": 62 | _64 | _LE, "X32": 62 | _LE, "ARM": 40 | _LE, "AARCH64": 183 | _64 | _LE,
          "RISCV64": 243 | _64 | _LE, "S390": 22, "S390X": 22 | _64, "PPC": 20, "PPC64": 21 | _64,
          "PPC64LE": 21 | _64 | _LE}
# The compat architectures whose programs a native kernel runs: the filter covers them too.
COMPAT = {ARCHES["X86_64"]: [ARCHES["X86"], ARCHES["X32"]], ARCHES["AARCH64"]: [ARCHES["ARM"]]}


class _ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp"""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


def _check(result: int, function, arguments: tuple) -> int:
    """libseccomp's functions say a failure as a negative errno."""
    if result < 0:
        raise OSError(-result, os.strerror(-result))
    return result


@functools.cache
def _library() -> ctypes.CDLL:
    """libseccomp, its functions typed."""
    try:
        lib = ctypes.CDLL(SONAME)
    except OSError as e:
        raise RootsandError(f"the seccomp filter needs libseccomp: {e}",
                            f"install libseccomp2 (Debian: apt install libseccomp2); or {OFF_HINT}") from None
    ctx, u32, fd = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    for name, argtypes in (("seccomp_merge", (ctx, ctx)), ("seccomp_load", (ctx,)),
                           ("seccomp_attr_set", (ctx, ctypes.c_int, u32)), ("seccomp_arch_add", (ctx, u32)),
                           ("seccomp_arch_remove", (ctx, u32)), ("seccomp_export_pfc", (ctx, fd)),
                           ("seccomp_export_bpf", (ctx, fd)),
                           ("seccomp_rule_add_array", (ctx, u32, ctypes.c_int, ctypes.c_uint,
                                                       ctypes.POINTER(_ArgCmp)))):
        function = getattr(lib, name)
        function.argtypes, function.restype, function.errcheck = argtypes, ctypes.c_int, _check
    lib.seccomp_init.argtypes, lib.seccomp_init.restype = (u32,), ctx
    lib.seccomp_release.argtypes, lib.seccomp_release.restype = (ctx,), None
    lib.seccomp_arch_native.argtypes, lib.seccomp_arch_native.restype = (), u32
    # negative for no number: a pseudo-number, or -1 (an unknown name)
    lib.seccomp_syscall_resolve_name_arch.argtypes = (u32, ctypes.c_char_p)
    lib.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    return lib


class Filter:
    """A libseccomp filter: ALLOW by default, refusing what its rules say; prepare() makes it."""

    def __init__(self):
        self._lib = _library()
        self._ctx = self._lib.seccomp_init(ACT_ALLOW)
        if not self._ctx:
            raise OSError(errno_module.EINVAL, os.strerror(errno_module.EINVAL))

    def __del__(self):
        if getattr(self, "_ctx", None):
            self._lib.seccomp_release(self._ctx)

    def add_arch(self, arch: int) -> None:
        self._lib.seccomp_arch_add(self._ctx, arch)

    def remove_arch(self, arch: int) -> None:
        self._lib.seccomp_arch_remove(self._ctx, arch)

    def set_attr(self, attr: int, value: int) -> None:
        self._lib.seccomp_attr_set(self._ctx, attr, value)

    def add_rule(self, errno: int, syscall: int | str, args: tuple) -> None:
        """Refuse `syscall` (a name, or the native architecture's number) with `errno` when all args match."""
        number = _resolve(0, syscall) if isinstance(syscall, str) else syscall  # 0: the native architecture
        compare = (_ArgCmp * len(args))(*((index, OPS[op], a, b) for index, op, a, b in args))
        self._lib.seccomp_rule_add_array(self._ctx, ACT_ERRNO | (errno & 0xFFFF), number, len(args), compare)

    def merge(self, other: "Filter") -> None:
        """Take in the rules of `other`, whose architectures must differ; libseccomp frees it then."""
        self._lib.seccomp_merge(self._ctx, other._ctx)
        other._ctx = None

    def load(self) -> None:
        self._lib.seccomp_load(self._ctx)

    def export_pfc(self, file) -> None:
        """The filter as text, one section per architecture, into an open file."""
        self._lib.seccomp_export_pfc(self._ctx, file.fileno())

    def export_bpf(self, file) -> None:
        self._lib.seccomp_export_bpf(self._ctx, file.fileno())


def _arches() -> list[int]:
    """The native architecture and the compat ones whose programs this kernel can run."""
    native = _library().seccomp_arch_native()
    return [native] + COMPAT.get(native, [])


def _resolve(arch: int, name: str) -> int:
    """libseccomp's number for `name` on `arch`: negative where it has none (or a multiplexer's pseudo-number)."""
    return _library().seccomp_syscall_resolve_name_arch(arch, name.encode())


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


def _new_call_number(name: str) -> int | None:
    """The native number of a call from _NEW_CALLS, where that number is the unified one; else None."""
    if name not in _NEW_CALLS:
        return None
    if _library().seccomp_arch_native() not in [ARCHES[arch] for arch in _UNIFIED_NUMBERS]:
        return None
    return _NEW_CALLS[name][0]


def _kernel_has(name: str) -> bool:
    """False when the kernel says ENOSYS to the call (with arguments it refuses before doing anything)."""
    number, args = _NEW_CALLS[name]
    try:
        libc.syscall(number, *args)
    except OSError as e:
        return e.errno != errno_module.ENOSYS
    return True


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


def _plan(rules: list[Rule], arches: list[int]) -> dict[int, list[tuple[int | str, int, tuple]]]:
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
        numbers = {arch: _resolve(arch, rule.syscall) for arch in arches}
        known = [arch for arch in arches if numbers[arch] >= 0 or _multiplexed(numbers[arch])]
        if not known:
            number = _new_call_number(rule.syscall)
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


def prepare(rules: list[Rule], native_only: bool = False) -> Filter:
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
    arches = _arches()[:1] if native_only else _arches()
    plans = _plan(rules, arches)
    groups: dict[tuple, list[int]] = {}  # architectures with the same rules share a filter; native's first
    for arch in arches:
        groups.setdefault(tuple(plans[arch]), []).append(arch)
    filters = [_build(group, list(plan), arches[0]) for plan, group in groups.items()]
    for other in filters[1:]:
        try:
            filters[0].merge(other)
        except OSError as e:
            raise RootsandError(f"cannot create the seccomp filter: merging: {e.strerror}", OFF_HINT) from None
    return filters[0]


def _build(arches: list[int], plan: list[tuple[int | str, int, tuple]], native: int) -> Filter:
    try:
        f = Filter()
        for arch in arches:
            if arch != native:
                f.add_arch(arch)
        if native not in arches:
            f.remove_arch(native)
    except OSError as e:
        raise RootsandError(f"cannot create the seccomp filter: {e.strerror}", OFF_HINT) from None
    try:
        # A binary tree of system call numbers: every call the command makes passes through the filter.
        f.set_attr(ATTR_CTL_OPTIMIZE, 2)
    except OSError:
        pass  # libseccomp before 2.5: a linear list, slower but the same rules
    for syscall, errno, args in plan:
        try:
            # By name: libseccomp translates it for each architecture (by number: the native one only).
            f.add_rule(errno, syscall, args)
        except OSError as e:
            raise RootsandError(f"seccomp rule for {_rule_text(Rule(str(syscall), errno, args))}: "
                                f"libseccomp refused it: {e.strerror}", OFF_HINT) from None
    return f


def _rule_text(rule: Rule) -> str:
    """Like "ioctl(arg1 & 0xffffffff == 0x5412)"."""
    args = ", ".join(f"arg{i} & {a:#x} == {b:#x}" if op == "MASKED_EQ" else f"arg{i} {op} {a:#x}"
                     for i, op, a, b in rule.args)
    return f"{rule.syscall}({args})"


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_bpf(program: bytes) -> None:
    """Load a compiled classic BPF program (struct sock_filter[], as bwrap's --seccomp takes it) into this
    process: no_new_privs is set already, so no privilege is needed. The kernel checks the program."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    try:
        libc.prctl(22, 2, ctypes.addressof(fprog))  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    except OSError as e:
        raise RootsandError(f"cannot load the seccomp program given: {e.strerror or e}") from None


def install(prepared: Filter) -> None:
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
