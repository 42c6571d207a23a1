#!/usr/bin/env python3
"""The seccomp probes: one table of system calls, each aimed at rules of
`rootsand.security.seccomp.rules.default_rules()`, run by both tests of the filter.

- tests/unit/test_seccomp.py imports it and runs the table in forked children with the filter loaded
  (rootsand.security.seccomp.compile's prepare and install), and once without a filter: the kernel's own answers;
- tests/integration/test_seccomp_sandbox.py copies it into the sandbox's writable current directory and runs
  `python3 seccomp_probes.py --json --numbers '{...}'` inside `rootsand run`, with the filter and with
  `seccomp = "none"`.

Each Probe names the call it makes (system call and arguments), the rules it exercises (the system call
and argument tuple of each Rule, as `default_rules` builds them), the errno the filter answers, and a benign
twin: the same call without the risky argument (TIOCSTI -> TCGETS, socket(AF_VSOCK) -> socket(AF_UNIX),
chmod 04755 -> chmod 0755), which no rule may refuse. A rule that refuses a whole system call (keyctl,
io_uring_setup, ...) has no twin: nothing of that call is allowed.

Every probe passes arguments the kernel refuses, or that do nothing lasting in the current directory (bad
pointers, fds, flags, magic numbers; a 0644 file named f): a call that gets past the filter does no harm,
also as root. The calls are made through libc's syscall() with numbers from `--numbers` (the host's
pyseccomp, which the sandbox cannot import after pivot_root) or the small table below.

This file is its own script inside the sandbox: the standard library only, no rootsand, no pyseccomp.
"""

import ctypes
import errno as E
import json
import os
import sys
import termios
from dataclasses import dataclass

SHM_MAX = 64 << 20  # rootsand.config.plan.SHM_MAX: the launcher's shm_max for a sandbox with a memory limit
MAP_MAX = 1 << 30  # the launcher's shared_map_max: the memory limit (1G in the untrusted and agent profiles)

AF_UNIX, AF_TIPC, AF_ALG, AF_VSOCK, AF_KCM = 1, 30, 38, 40, 41
SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET = 1, 2, 5
FAMILIES = {"AF_VSOCK": (AF_VSOCK, SOCK_STREAM), "AF_KCM": (AF_KCM, SOCK_DGRAM), "AF_TIPC": (AF_TIPC, SOCK_SEQPACKET),
            "AF_ALG": (AF_ALG, SOCK_SEQPACKET)}
CLONE_NEWUSER, CLONE_FILES, SIGCHLD = 0x10000000, 0x400, 17
ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC = 0x0040000, 0x0400000
S_ISUID, S_ISGID, S_IFREG = 0o4000, 0o2000, 0o100000
AT_FDCWD = -100
O_WRONLY, O_CREAT = os.O_WRONLY, os.O_CREAT
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
PROT_READ, MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE = 1, 0x01, 0x02, 0x03
MACHINE = os.uname().machine
MAP_ANONYMOUS = 0x800 if MACHINE.startswith("mips") else 0x10 if MACHINE.startswith(("parisc", "alpha")) else 0x20
SHMGET, SHMCTL = 23, 24  # ipc(2)'s call numbers
TIOCSTI = termios.TIOCSTI
TIOCLINUX = getattr(termios, "TIOCLINUX", 0x541C)
HIGH = 1 << 32  # a bit above what the kernel reads (an int, a 32-bit ioctl request, a 16-bit mode)
LOW32 = 0xFFFFFFFF
U64 = (1 << 64) - 1
S390 = os.uname().machine.startswith("s390")  # clone's flags come second there

# What the runner passes for these arguments; any other string is a C string (a path in the current directory).
FILE = "f"  # a 0644 file the runner makes in the current directory
FD = "<fd of f>"
DEVNULL = "<fd of /dev/null>"
BUF = "<a byte>"
PAIR = "<int[2]>"
PLACEHOLDERS = (FD, DEVNULL, BUF, PAIR)

# The runner's reason that a run without the filter may give the filter's errno too.
NEEDS_CAP = "needs a capability: the kernel says EPERM to a caller without it"

# The native numbers of every call in the table, where `--numbers` does not give them (from libseccomp;
# the unit test checks them against pyseccomp). Missing: the architecture lacks the call.
NUMBERS = {
    "x86_64": {
        "ioctl": 16, "keyctl": 250, "add_key": 248, "request_key": 249, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "open_by_handle_at": 304, "acct": 163, "swapon": 167, "swapoff": 168, "reboot": 169,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "personality": 135, "unshare": 272, "clone": 56, "clone3": 435, "socket": 41, "socketpair": 53,
        "chmod": 90, "fchmod": 91, "fchmodat": 268, "fchmodat2": 452, "open": 2, "openat": 257, "creat": 85,
        "mknod": 133, "mknodat": 259, "openat2": 437, "memfd_create": 319, "memfd_secret": 447, "shmget": 29,
        "shmctl": 31, "getpid": 39, "mmap": 9,
    },
    "aarch64": {
        "ioctl": 29, "keyctl": 219, "add_key": 217, "request_key": 218, "kexec_load": 104, "kexec_file_load": 294,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "open_by_handle_at": 265, "acct": 89, "swapon": 224, "swapoff": 225, "reboot": 142,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433, "mount_setattr": 442,
        "personality": 92, "unshare": 97, "clone": 220, "clone3": 435, "socket": 198, "socketpair": 199,
        "fchmod": 52, "fchmodat": 53, "fchmodat2": 452, "openat": 56, "mknodat": 33, "openat2": 437,
        "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "shmctl": 195, "getpid": 172,
        "mmap": 222,
    },
}


@dataclass(frozen=True)
class Call:
    """One system call: `syscall(*args)`; an argument is an int, one of PLACEHOLDERS, or a C string."""

    name: str
    syscall: str
    args: tuple = ()
    # "fd": close the fd it returns; "pair": close the two fds in PAIR; "shm": remove the segment it returns;
    # "fork": a clone whose child leaves at once; "map N": munmap the N bytes it mapped
    kind: str = ""
    isolate: bool = False  # in a forked child: the call may change the process (personality, unshare)


@dataclass(frozen=True)
class Probe(Call):
    """A call that rules refuse: `targets` are those rules as (syscall, args) of seccomp.rules.Rule."""

    errno: int = 0  # what the rules answer
    targets: tuple = ()
    benign: "Call | None" = None  # the twin no rule refuses
    kernel_may_agree: str = ""  # why a kernel without the filter may answer `errno` too ("": it does not)


def _masked(index: int, mask: int, value: int) -> tuple:
    return (index, "MASKED_EQ", mask, value)


def _personality_targets(flag: int, value: int) -> tuple:
    """The personality rules for `flag` that `value` meets: one for each other bit of the low 32 that it
    leaves clear (the rules say "flag set and bit N clear": the query 0xffffffff has every bit set)."""
    return tuple(("personality", (_masked(0, flag | 1 << bit, flag),)) for bit in range(32)
                 if 1 << bit != flag and not value & 1 << bit)


def table(shm_max: int = SHM_MAX, map_max: int = MAP_MAX) -> list[Probe]:
    """Every probe, in the order of default_rules; shm_max and map_max (shared_map_max) as the rules were built
    with them (the names do not depend on them)."""
    probes = []

    def add(name, syscall, args, errno, targets=None, **kw):
        probes.append(Probe(name, syscall, tuple(args), errno=errno,
                            targets=tuple(targets) if targets is not None else ((syscall, ()),), **kw))

    tcgets = Call("ioctl TCGETS", "ioctl", (DEVNULL, termios.TCGETS, BUF))  # /dev/null: ENOTTY, and it got through
    for request, label in ((TIOCSTI, "TIOCSTI"), (TIOCLINUX, "TIOCLINUX")):
        target = [("ioctl", (_masked(1, LOW32, request),))]
        add(f"ioctl {label}", "ioctl", (DEVNULL, request, BUF), E.EPERM, target, benign=tcgets)
        # The kernel truncates the request to 32 bits: high bits must not get it past (CVE-2019-10063).
        add(f"ioctl {label}|1<<32", "ioctl", (DEVNULL, request | HIGH, BUF), E.EPERM, target, benign=tcgets)

    plain = [  # (call, arguments the kernel refuses, reason the kernel may say EPERM too)
        ("keyctl", (9999, 0, 0, 0, 0), ""),  # no such operation
        ("add_key", (0, 0, 0, 0, 0), ""),  # NULL type
        ("request_key", (0, 0, 0, 0), ""),
        ("kexec_load", (0, 1000, 0, 0x80000000), NEEDS_CAP),  # too many segments, unknown architecture
        ("kexec_file_load", (-1, -1, 0, 0, 0x80000000), NEEDS_CAP),  # unknown flag
        ("init_module", (0, 0, 0), NEEDS_CAP),  # an empty image
        ("finit_module", (-1, 0, 0), NEEDS_CAP),  # bad fd
        ("delete_module", (0, 0), NEEDS_CAP),  # NULL name
        ("bpf", (9999, 0, 0), NEEDS_CAP),  # no such command (kernel.unprivileged_bpf_disabled: EPERM)
        ("perf_event_open", (0, 0, -1, -1, 0), ""),  # NULL attr
        ("userfaultfd", (0x80000001,), ""),  # UFFD_USER_MODE_ONLY (allowed to all) and an unknown flag
        ("open_by_handle_at", (-1, 0, 0), NEEDS_CAP),
        ("acct", (1,), NEEDS_CAP),  # a bad pointer (NULL would turn accounting off)
        ("swapon", (1, 0), NEEDS_CAP),
        ("swapoff", (1,), NEEDS_CAP),
        ("reboot", (0, 0, 0, 0), NEEDS_CAP),  # bad magic
        ("io_uring_setup", (1, 0), "kernel.io_uring_disabled = 2 says EPERM"),  # NULL params: EFAULT
        ("io_uring_enter", (-1, 0, 0, 0, 0, 0), ""),  # bad fd
        ("io_uring_register", (-1, 0, 0, 0), ""),
    ]
    for syscall, args, agree in plain:
        add(syscall, syscall, args, E.EPERM, kernel_may_agree=agree)
    for syscall, args in (("open_tree", (-1, 0, 0)), ("move_mount", (-1, 0, -1, 0, 0)), ("fsopen", (0, 0)),
                          ("fsconfig", (-1, 0, 0, 0, 0)), ("fsmount", (-1, 0, 0)), ("fspick", (-1, 0, 0)),
                          ("mount_setattr", (-1, 0, 0, 0, 0))):
        add(syscall, syscall, args, E.ENOSYS)

    query = Call("personality query", "personality", (0xFFFFFFFF,))
    for flag, label in ((ADDR_NO_RANDOMIZE, "ADDR_NO_RANDOMIZE"), (READ_IMPLIES_EXEC, "READ_IMPLIES_EXEC")):
        add(f"personality {label}", "personality", (flag,), E.EPERM, _personality_targets(flag, flag),
            benign=query, isolate=True)
    # Unused high bits do not make it the query.
    add("personality ADDR_NO_RANDOMIZE|1<<31", "personality", (ADDR_NO_RANDOMIZE | 1 << 31,), E.EPERM,
        _personality_targets(ADDR_NO_RANDOMIZE, ADDR_NO_RANDOMIZE | 1 << 31),
        benign=Call("personality PER_LINUX", "personality", (0,), isolate=True), isolate=True)

    # nested_userns = false
    newuser = _masked(0, CLONE_NEWUSER, CLONE_NEWUSER)
    userns_off = "where unprivileged user namespaces are off (Debian's kernel.unprivileged_userns_clone = 0)"
    add("unshare CLONE_NEWUSER", "unshare", (CLONE_NEWUSER,), E.EPERM, [("unshare", (newuser,))],
        benign=Call("unshare CLONE_FILES", "unshare", (CLONE_FILES,), isolate=True), isolate=True,
        kernel_may_agree=userns_off)
    flags_at = 1 if S390 else 0
    add("clone CLONE_NEWUSER", "clone", clone_args(CLONE_NEWUSER), E.EPERM,
        [("clone", (_masked(flags_at, CLONE_NEWUSER, CLONE_NEWUSER),))], kind="fork",
        benign=Call("clone (fork)", "clone", clone_args(0), kind="fork"), kernel_may_agree=userns_off)
    add("clone3", "clone3", (0, 0), E.ENOSYS)  # NULL args, size 0: EINVAL if it ran

    # net_mode other than "host": the rarely used socket families
    unix = Call("socket AF_UNIX", "socket", (AF_UNIX, SOCK_STREAM, 0), kind="fd")
    unix_pair = Call("socketpair AF_UNIX", "socketpair", (AF_UNIX, SOCK_STREAM, 0, PAIR), kind="pair")
    absent = "a kernel without the family says EAFNOSUPPORT too"
    for label, (family, kind) in FAMILIES.items():
        for syscall, args, twin, how in (("socket", (family, kind, 0), unix, "fd"),
                                         ("socketpair", (family, kind, 0, PAIR), unix_pair, "pair")):
            add(f"{syscall} {label}", syscall, args, E.EAFNOSUPPORT, [(syscall, (_masked(0, LOW32, family),))],
                benign=twin, kind=how, kernel_may_agree=absent)
    # The kernel reads an int: high bits must not get the family past.
    add("socket AF_VSOCK|1<<32", "socket", (AF_VSOCK | HIGH, SOCK_STREAM, 0), E.EAFNOSUPPORT,
        [("socket", (_masked(0, LOW32, AF_VSOCK),))], benign=unix, kind="fd", kernel_may_agree=absent)

    # setuid_bits = false: no setuid or setgid bit on a file, from any call that gives a file its mode
    for syscall, index, make in _MODE_CALLS:
        for bit, mode, plain_mode in ((S_ISUID, 0o4755, 0o755), (S_ISGID, 0o2755, 0o1777)):
            if syscall in _CREATING:  # a new file: named after the probe, 0644 for the twin
                plain_mode = 0o644
            args, kind = make(f"{syscall}-{mode:o}", mode)
            twin_args, _ = make(f"{syscall}-{plain_mode:04o}", plain_mode)
            add(f"{syscall} {mode:04o}", syscall, args, E.EPERM, [(syscall, (_masked(index, bit, bit),))],
                benign=Call(f"{syscall} {plain_mode:04o}", syscall, twin_args, kind=kind), kind=kind)
    # The kernel reads a 16-bit mode: high bits do not hide the setuid bit.
    add("chmod 4755|1<<32", "chmod", (FILE, 0o4755 | HIGH), E.EPERM, [("chmod", (_masked(1, S_ISUID, S_ISUID),))],
        benign=Call("chmod 0755|1<<32", "chmod", (FILE, 0o755 | HIGH)))
    add("openat2", "openat2", (AT_FDCWD, FILE, 0, 0), E.ENOSYS,  # usize 0: EINVAL if it ran
        kernel_may_agree="kernels before 5.6 lack openat2")

    # limit_memfd: memory that RLIMIT_AS does not count
    add("memfd_create", "memfd_create", ("probe", 0), E.ENOSYS, kind="fd")
    add("memfd_secret", "memfd_secret", (LOW32,), E.ENOSYS,  # unknown flags: EINVAL if it ran
        kernel_may_agree="without secretmem (secretmem.enable=0, the default on many kernels) it says ENOSYS")
    # shm_max: SysV segments above it. The sandbox's IPC namespace gets kernel.shmmax = shm_max too.
    shmmax = "inside a sandbox with a memory limit kernel.shmmax is the same limit"
    flags = IPC_CREAT | 0o600
    add("shmget shm_max+1", "shmget", (IPC_PRIVATE, shm_max + 1, flags), E.EINVAL,
        [("shmget", ((1, "GT", shm_max, 0),))], kind="shm", kernel_may_agree=shmmax,
        benign=Call("shmget shm_max", "shmget", (IPC_PRIVATE, shm_max, flags), kind="shm"))
    # Where shmget goes through ipc(2) (32-bit x86, s390, ppc); absent on x86-64 and aarch64.
    add("ipc SHMGET shm_max+1", "ipc", (SHMGET, IPC_PRIVATE, shm_max + 1, flags, 0, 0), E.EINVAL,
        [("ipc", (_masked(0, 0xFFFF, SHMGET), (2, "GT", shm_max, 0)))], kind="shm", kernel_may_agree=shmmax,
        benign=Call("ipc SHMGET shm_max", "ipc", (SHMGET, IPC_PRIVATE, shm_max, flags, 0, 0), kind="shm"))
    # shared_map_max: shared anonymous mappings above it (mapped, never touched, unmapped when they succeed).
    # The twins: one of map_max bytes, and a private one (memory that RLIMIT_DATA counts).
    shared = MAP_SHARED | MAP_ANONYMOUS
    for call in ("mmap", "mmap2"):  # mmap2: 32-bit architectures, where it takes the same arguments
        target = [(call, ((1, "GT", map_max, 0), _masked(3, shared, shared)))]
        for label, flags, twin_name, twin_args in (
                ("MAP_SHARED", MAP_SHARED, "map_max", (map_max, MAP_SHARED)),
                ("MAP_SHARED_VALIDATE", MAP_SHARED_VALIDATE, "MAP_PRIVATE", (map_max + 1, MAP_PRIVATE))):
            length, twin_flags = twin_args
            add(f"{call} {label} map_max+1", call, (0, map_max + 1, PROT_READ, flags | MAP_ANONYMOUS, -1, 0),
                E.ENOMEM, target, kind=f"map {map_max + 1}",
                benign=Call(f"{call} {twin_name}", call, (0, length, PROT_READ, twin_flags | MAP_ANONYMOUS, -1, 0),
                            kind=f"map {length}"))
    return probes


def clone_args(flags: int) -> tuple:
    """Raw clone with a NULL stack (fork-like): flags first, but second on s390."""
    return ((0, flags | SIGCHLD) if S390 else (flags | SIGCHLD, 0)) + (0, 0, 0)


# The calls that give a file a mode: (call, index of the mode, make(path, mode) -> (arguments, kind)).
_MODE_CALLS = (
    ("chmod", 1, lambda path, mode: ((FILE, mode), "")),
    ("fchmod", 1, lambda path, mode: ((FD, mode), "")),
    ("fchmodat", 2, lambda path, mode: ((AT_FDCWD, FILE, mode, 0), "")),
    ("fchmodat2", 2, lambda path, mode: ((AT_FDCWD, FILE, mode, 0), "")),
    ("open", 2, lambda path, mode: ((path, O_CREAT | O_WRONLY, mode), "fd")),
    ("openat", 3, lambda path, mode: ((AT_FDCWD, path, O_CREAT | O_WRONLY, mode), "fd")),
    ("creat", 1, lambda path, mode: ((path, mode), "fd")),
    ("mknod", 1, lambda path, mode: ((path, S_IFREG | mode, 0), "")),
    ("mknodat", 2, lambda path, mode: ((AT_FDCWD, path, S_IFREG | mode, 0), "")),
)
_CREATING = ("open", "openat", "creat", "mknod", "mknodat")


def benign_calls(probes: list[Probe]) -> list[Call]:
    """The twins of the probes, each once."""
    out = {}
    for probe in probes:
        if probe.benign is not None:
            out.setdefault(probe.benign.name, probe.benign)
    return list(out.values())


def created_files(calls) -> list[str]:
    """The files the calls create in the current directory (a refused call must leave none)."""
    return sorted({arg for call in calls for arg in call.args
                   if isinstance(arg, str) and arg not in PLACEHOLDERS and arg != FILE and call.syscall != "memfd_create"})


def syscalls(calls) -> list[str]:
    return sorted({call.syscall for call in calls} | {"shmctl", "getpid"})


# ---------------------------------------------------------------------------------------------- running

class Runner:
    """Makes the calls in the current directory: 0 on success, else the errno; None where this architecture
    has no such call."""

    def __init__(self, numbers: dict):
        self.numbers = numbers
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long
        self.fds: dict[str, int] = {}
        self._keep = []

    def setup(self, calls) -> None:
        """f (mode 0644) and the fds; the files the calls create removed, so that each call can create its own."""
        for name in created_files(calls):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        fd = os.open(FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b"#!/bin/sh\necho probe\n")
        os.fchmod(fd, 0o644)
        os.close(fd)
        self.fds = {FD: os.open(FILE, os.O_RDONLY), DEVNULL: os.open("/dev/null", os.O_RDONLY)}

    def _arg(self, arg, pair):
        if arg in self.fds:
            return ctypes.c_long(self.fds[arg])
        if arg == BUF:
            buf = ctypes.create_string_buffer(b"x", 8)
            self._keep.append(buf)
            return ctypes.c_void_p(ctypes.addressof(buf))
        if arg == PAIR:
            return ctypes.c_void_p(ctypes.addressof(pair))
        if isinstance(arg, str):
            buf = ctypes.create_string_buffer(arg.encode())
            self._keep.append(buf)
            return ctypes.c_void_p(ctypes.addressof(buf))
        return ctypes.c_ulong(arg & U64)

    def number(self, syscall: str) -> "int | None":
        try:
            number = self.numbers[syscall]
        except KeyError:
            return None
        return number if number is not None and number >= 0 else None

    def has(self, syscall: str) -> bool:
        return self.number(syscall) is not None

    def raw(self, syscall: str, args, pair=None) -> tuple[int, int]:
        """(return value, errno) of the raw system call: no libc wrapper in the way."""
        number = self.number(syscall)
        pair = pair if pair is not None else (ctypes.c_int * 2)(-1, -1)
        ctypes.set_errno(0)
        result = self.libc.syscall(ctypes.c_long(number), *(self._arg(a, pair) for a in args))
        return result, (ctypes.get_errno() if result == -1 else 0)

    def call(self, call: Call):
        if not self.has(call.syscall):
            return None
        if call.isolate:
            return self._in_child(lambda: self._call(call))
        return self._call(call)

    def _call(self, call: Call):
        pair = (ctypes.c_int * 2)(-1, -1)
        result, error = self.raw(call.syscall, call.args, pair)
        if result == -1:
            return error
        if call.kind == "fd":
            os.close(result)
        elif call.kind == "pair":
            for fd in pair:
                os.close(fd)
        elif call.kind == "shm":
            if self.has("shmctl"):
                self.raw("shmctl", (result, IPC_RMID, 0))
            else:
                self.raw("ipc", (SHMCTL, result, IPC_RMID, 0, 0, 0))
        elif call.kind.startswith("map "):
            self.libc.munmap(ctypes.c_void_p(result), ctypes.c_size_t(int(call.kind.split()[1])))
        elif call.kind == "fork":
            if result == 0:  # the child
                os._exit(0)
            os.waitpid(result, 0)
        return 0

    @staticmethod
    def _in_child(function):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(r)
                os.write(w, json.dumps(function()).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        return json.loads(data)


def spawn_true() -> int:
    """posix_spawn uses clone3 in glibc 2.34 and later, and must fall back to clone where clone3 says ENOSYS."""
    true = "/usr/bin/true" if os.path.exists("/usr/bin/true") else "/bin/true"
    try:
        pid = os.posix_spawn(true, ["true"], {})
    except OSError as e:
        return e.errno
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def seccomp_mode() -> str:
    with open("/proc/self/status") as f:
        return f.read().split("Seccomp:")[1].split()[0]


# What every filter leaves working (not a twin of one probe): the plain ones and glibc's clone3 fallback.
EXTRAS = {"getpid": lambda runner: runner.call(Call("getpid", "getpid")),
          "posix_spawn": lambda runner: spawn_true(),
          "Seccomp": lambda runner: seccomp_mode()}


def run_all(numbers: dict, shm_max: int = SHM_MAX, only=None, extras=tuple(EXTRAS), map_max: int = MAP_MAX) -> dict:
    """{name: result} of every probe and twin (or those named in `only`) and of the named EXTRAS, made in
    the current directory."""
    probes = table(shm_max, map_max)
    calls = [c for c in probes + benign_calls(probes) if only is None or c.name in only]
    runner = Runner(numbers)
    runner.setup(calls)
    out = {call.name: runner.call(call) for call in calls}
    out.update({name: EXTRAS[name](runner) for name in extras})
    return out


def expected(rules, kernel: dict, shm_max: int = SHM_MAX, map_max: int = MAP_MAX) -> dict:
    """What each probe and twin answers under a filter of `rules` (objects with syscall, args and errno, like
    rootsand.security.seccomp.rules.Rule), given `kernel`, the answers without a filter: the errno of the rule that refuses
    a probe; the kernel's answer for a probe no rule refuses, and for every twin. (When two rules have the
    same system call and arguments the later one wins, as in rootsand.security.seccomp.compile.prepare.)"""
    errnos = {(rule.syscall, tuple(rule.args)): rule.errno for rule in rules}
    probes = table(shm_max, map_max)
    out = {}
    for probe in probes:
        refused = {errnos[target] for target in probe.targets if target in errnos}
        if len(refused) > 1:
            raise ValueError(f"{probe.name}: its rules answer {sorted(refused)}: which one is expected?")
        out[probe.name] = refused.pop() if refused and kernel[probe.name] is not None else kernel[probe.name]
    out.update({call.name: kernel[call.name] for call in benign_calls(probes)})
    return out


def builtin_numbers() -> dict:
    machine = os.uname().machine
    if machine not in NUMBERS:
        raise SystemExit(f"seccomp_probes: no system call numbers for {machine}: pass --numbers")
    return NUMBERS[machine]


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Make each seccomp probe's call in the current directory.")
    parser.add_argument("--json", action="store_true", help="print {name: result} as JSON")
    parser.add_argument("--numbers", help="the system call numbers as JSON {name: number} (default: built in)")
    parser.add_argument("--shm-max", type=int, default=SHM_MAX, help="the shm_max the rules were built with")
    parser.add_argument("--only", nargs="*", help="just these probes, twins or extras")
    parser.add_argument("--no-extras", action="store_true", help="leave out getpid, posix_spawn and Seccomp")
    opts = parser.parse_args(argv)
    numbers = json.loads(opts.numbers) if opts.numbers else builtin_numbers()
    only = set(opts.only) if opts.only else None
    extras = [] if opts.no_extras else [name for name in EXTRAS if only is None or name in only]
    results = run_all(numbers, opts.shm_max, only, extras)
    if opts.json:
        print(json.dumps(results))
    else:
        for name, result in results.items():
            text = "absent" if result is None else ("ok" if result == 0 else
                                                   E.errorcode.get(result, str(result)) if isinstance(result, int)
                                                   else result)
            print(f"{name:40} {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
