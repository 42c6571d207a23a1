"""The seccomp filter installed in the command's process just before execve.

A deny list on top of ALLOW: it refuses what no ordinary program needs and what widens the kernel
surface a sandboxed command can reach (keyrings, kernel modules, kexec, bpf, TIOCSTI, ...).

Two steps, because the launcher pivots the root away from site-packages before it execs:
`prepare(rules)` imports pyseccomp (libseccomp through ctypes, ~25 ms: never at start-up) and builds
the filter while the host's files are still visible; `install(prepared)` loads it, last, just before
execve. Everything else here is pure Python.
"""

import errno as errno_module
import os
import re
from dataclasses import dataclass
from typing import Any, NoReturn

from rootsand import tomlfile
from rootsand.errors import RootsandError

OPS = ("EQ", "NE", "LT", "LE", "GT", "GE", "MASKED_EQ")
MAX_ERRNO = 4095  # the kernel treats -1..-4095 as errors
U64 = (1 << 64) - 1
OFF_HINT = 'set security.seccomp = "none" in the profile to run without the filter'

CLONE_NEWUSER = 0x10000000
ADDR_NO_RANDOMIZE = 0x0040000
READ_IMPLIES_EXEC = 0x0400000


@dataclass(frozen=True)
class Rule:
    syscall: str  # name, as libseccomp knows it
    errno: int  # what the call returns instead of running
    args: tuple[tuple[int, str, int, int], ...] = ()  # (index, op, datum_a, datum_b), all must match;
    # for MASKED_EQ datum_a is the mask and datum_b the value, for the other ops datum_b is unused (0)
    why: str = ""  # one line: what the rule stops


# ---------------------------------------------------------------------------------------------- rules

def default_rules(nested_userns: bool) -> list[Rule]:
    """The default deny list; with nested_userns False it also stops new user namespaces."""
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
    # ENOSYS, not EPERM: libmount and friends then fall back to mount(2), which has its own checks.
    for name in ("open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"):
        rules.append(Rule(name, ENOSYS, why="the new mount API, which mount(2)'s checks do not cover"))
    rules += _personality_rules()
    if not nested_userns:
        # s390 swaps clone's first two arguments: the flags come second.
        clone_flags = 1 if os.uname().machine.startswith("s390") else 0
        newuser = ("MASKED_EQ", CLONE_NEWUSER, CLONE_NEWUSER)
        rules += [
            Rule("unshare", EPERM, ((0, *newuser),), "new user namespaces (nested_userns = false)"),
            Rule("clone", EPERM, ((clone_flags, *newuser),), "new user namespaces (nested_userns = false)"),
            # clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back to clone.
            Rule("clone3", ENOSYS, why="clone3's flags cannot be checked; libc falls back to clone"),
        ]
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


def rules_for(seccomp: str, nested_userns: bool) -> list[Rule] | None:
    """The rules for a profile's `security.seccomp` ("default", "none" or a rule file's path); None: no filter.

    A rule file adds to the default rules: it can refuse more or change an errno, never allow what they refuse.
    """
    if seccomp == "none":
        return None
    rules = default_rules(nested_userns)
    if seccomp != "default":
        rules += load_rule_file(seccomp)
    return rules


# ---------------------------------------------------------------------------------------------- rule files

class _RuleFile:
    """A rule file's text, to point an error at the line of a `[[rule]]` table or of a key in it."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.top: list[tuple[int, str]] = []  # the lines before the first table
        self.tables: list[list[tuple[int, str]]] = []  # the lines of each [[rule]], header first
        self.headers: dict[str, int] = {}  # the first line of each table name, e.g. a mistaken [rule]
        current = self.top
        for number, line in enumerate(text.split("\n"), 1):
            header = re.match(r"\s*\[\[?\s*([^\]]*?)\s*\]", line)
            if header:  # any table header ends the previous [[rule]]
                self.headers.setdefault(header.group(1), number)
                current = [] if re.match(r"\s*\[\[\s*rule\s*\]\]", line) else None
                if current is not None:
                    self.tables.append(current)
            if current is not None:
                current.append((number, line))

    def line_of(self, index: int | None, key: str | None) -> int | None:
        if index is None:
            lines, fallback = self.top, self.headers.get(key or "")
        elif index <= len(self.tables):
            lines, fallback = self.tables[index - 1][1:], self.tables[index - 1][0][0]
        else:
            return None  # rules written as an inline array
        for number, line in lines if key else ():
            if re.match(rf"\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return number
        return fallback

    def fail(self, message: str, index: int | None = None, key: str | None = None, sub: str = "",
             hint: str | None = None) -> NoReturn:
        line = self.line_of(index, key)
        where = f"seccomp rules {self.path}" + (f", line {line}" if line else "")
        what = ".".join(([f"rule[{index}]"] if index else []) + ([key] if key else [])) + sub  # rule[2].args[1].op
        text = f"{where}: {what}: {message}" if what else f"{where}: {message}"
        raise RootsandError(text.replace("\n", "\\n"), hint)


def _type_name(value: Any) -> str:
    names = {"bool": "boolean", "int": "integer", "float": "float", "str": "string", "list": "array",
             "dict": "table"}
    return names.get(type(value).__name__, type(value).__name__)


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
# in a subprocess: ~10 ms and two processes inside the sandbox. The sonames are stable: try them first.
_SONAMES = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}


def _import_pyseccomp():
    import ctypes
    import ctypes.util
    import sys

    if "pyseccomp" not in sys.modules:
        find_library = ctypes.util.find_library
        ctypes.util.find_library = lambda name: _SONAMES.get(name) or find_library(name)
        try:
            import pyseccomp  # noqa: F401
        except OSError:  # a soname that is not there on this system: let ctypes search
            sys.modules.pop("pyseccomp", None)
        finally:
            ctypes.util.find_library = find_library
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


def _syscall_known(name: str, arches: list[int]) -> bool:
    """True when libseccomp has a number for `name` on one of the filter's architectures."""
    import pyseccomp

    return any(pyseccomp.resolve_syscall(arch, name) >= 0 for arch in arches)


def prepare(rules: list[Rule]) -> Any:
    """Build (not load) the filter: ALLOW, except what the rules refuse. Call it while site-packages is visible.

    The filter covers the native architecture and its compat ones (x86 and x32 on x86-64, arm on aarch64),
    so a 32-bit program cannot walk around it; a system call that an architecture lacks is left out there.
    When two rules have the same system call and arguments the later one wins (a rule file can change
    a default rule's errno); a rule without arguments covers every call of that system call.
    """
    pyseccomp = _import_pyseccomp()
    arches = _arches(pyseccomp)
    try:
        f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for arch in arches[1:]:
            f.add_arch(arch)
    except OSError as e:
        raise RootsandError(f"cannot create the seccomp filter: {e.strerror}", OFF_HINT) from None
    try:
        # A binary tree of system call numbers: every call the command makes passes through the filter.
        f.set_attr(pyseccomp.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass  # libseccomp before 2.5: a linear list, slower but the same rules
    last = {(r.syscall, tuple(sorted(r.args))): r for r in rules}  # dicts keep the first key's place
    for rule in last.values():
        if not _syscall_known(rule.syscall, arches):
            # Fail closed: an old libseccomp that lacks e.g. clone3 would leave a hole, not a smaller filter.
            raise RootsandError(f"seccomp rule for {rule.syscall}: libseccomp does not know this system call",
                                f"upgrade libseccomp2 (2.5 or later); or {OFF_HINT}")
        args = [pyseccomp.Arg(index, getattr(pyseccomp, op), a, b) for index, op, a, b in rule.args]
        try:
            # By name: libseccomp translates it for each architecture and skips those without it.
            f.add_rule(pyseccomp.ERRNO(rule.errno), rule.syscall, *args)
        except (OSError, ValueError) as e:
            detail = e.strerror if isinstance(e, OSError) else str(e)
            raise RootsandError(f"seccomp rule for {_rule_text(rule)}: libseccomp refused it: {detail}",
                                OFF_HINT) from None
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
