"""The seccomp rules as data: what the filter installed in the command's process refuses.

A deny list on top of ALLOW: it refuses what no ordinary program needs and what widens the kernel
surface a sandboxed command can reach (keyrings, kernel modules, kexec, bpf, TIOCSTI, ...); and, as the
profile says, rarely used socket families (security.socket_families, not with --net host), setuid and
setgid bits on files (security.setuid_bits), and memory that RLIMIT_DATA does not count (memfds, large SysV
segments, large shared anonymous mappings) where a memory limit has no memory cgroup to enforce it.

Pure: no libseccomp, no system call, nothing read from the host. What the rules depend on in the host's
architecture (ioctl numbers, clone's argument order) comes in as a HostArch, which host.facts() reads, so
the plan is the same for the same facts. rulefile.py reads a profile's own rules, compile.py turns rules
into a filter.
"""

import errno as errno_module

from rootsand.config.model import Record

OPS = ("EQ", "NE", "LT", "LE", "GT", "GE", "MASKED_EQ")
MAX_ERRNO = 4095  # the kernel treats -1..-4095 as errors
U64 = (1 << 64) - 1

CLONE_NEWUSER = 0x10000000
ADDR_NO_RANDOMIZE = 0x0040000
READ_IMPLIES_EXEC = 0x0400000
S_ISUID, S_ISGID = 0o4000, 0o2000
SHMGET = 23  # ipc(2)'s call number for shmget
MAP_SHARED = 0x01
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


class HostArch(Record):
    """What the rules depend on in the host's architecture, as host.facts() reads it (termios knows each
    architecture's ioctl numbers). The defaults are x86-64's, whose ioctl numbers are the generic ones."""

    __slots__ = ("machine", "tiocsti", "tioclinux")
    FIELDS = {
        "machine": "x86_64",  # os.uname().machine
        "tiocsti": 0x5412, "tioclinux": 0x541C,  # termios.TIOCSTI, TIOCLINUX
    }


# ---------------------------------------------------------------------------------------------- rules

def default_rules(nested_userns: bool, *, net_mode: str = "none", setuid_bits: bool = False,
                  socket_families: tuple[str, ...] = (), limit_memfd: bool = False,
                  shm_max: int | None = None, shared_map_max: int | None = None,
                  arch: HostArch | None = None) -> list[Rule]:
    """The default deny list for a host of `arch` (x86-64's when None); with nested_userns False it also
    stops new user namespaces.

    A net_mode whose netmodes entry leaves the sockets open (host) lets every socket family through; otherwise
    those of SOCKET_FAMILIES not named in socket_families are refused. setuid_bits True lets files get setuid
    and setgid bits. limit_memfd refuses memfd_create and memfd_secret, and an integer shm_max refuses larger
    SysV shared memory segments, and an integer shared_map_max larger shared anonymous mappings: memory that
    RLIMIT_DATA does not count, for sandboxes with a memory limit that no memory cgroup enforces.
    """
    unknown = [name for name in socket_families if name not in SOCKET_FAMILIES]
    if unknown:
        raise ValueError(f"unknown socket families {unknown}: expected some of {', '.join(SOCKET_FAMILIES)}")
    for name, value in (("shm_max", shm_max), ("shared_map_max", shared_map_max)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= U64):
            raise ValueError(f"{name} must be bytes (0..2**64-1), got {value!r}")
    arch = arch or HostArch()
    EPERM, ENOSYS = errno_module.EPERM, errno_module.ENOSYS
    tiocsti, tioclinux = arch.tiocsti, arch.tioclinux
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
        clone_flags = 1 if arch.machine.startswith("s390") else 0
        newuser = ("MASKED_EQ", CLONE_NEWUSER, CLONE_NEWUSER)
        rules += [
            Rule("unshare", EPERM, ((0, *newuser),), "new user namespaces (nested_userns = false)"),
            Rule("clone", EPERM, ((clone_flags, *newuser),), "new user namespaces (nested_userns = false)"),
            # clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back to clone.
            Rule("clone3", ENOSYS, why="clone3's flags cannot be checked; libc falls back to clone"),
        ]
    from rootsand.config.netmodes import MODES

    if not MODES[net_mode].open_sockets:  # with the host's network the user chose no network isolation
        rules += _socket_family_rules(socket_families)
    if not setuid_bits:
        rules += _setuid_rules()
    if limit_memfd:
        # ENOSYS, what a kernel without these calls says: programs that use memfds for speed (Wayland
        # clients, Mesa, PulseAudio, JITs) then fall back to a file in /dev/shm or a temporary directory,
        # which are size-capped tmpfs mounts. EPERM reads as a hard failure to code that checks for ENOSYS.
        memfd = "memory that RLIMIT_DATA does not count, and no memory cgroup counts it here"
        rules += [Rule("memfd_create", ENOSYS, why=f"memfd_create: {memfd}; programs fall back to /dev/shm"),
                  Rule("memfd_secret", ENOSYS, why=f"memfd_secret: {memfd}")]
    if shm_max is not None:
        # EINVAL: what the kernel says for a size above kernel.shmmax. A segment outlives its process, and
        # RLIMIT_DATA never counts it (a shared mapping).
        why = f"SysV shared memory segments above {shm_max} bytes: memory that RLIMIT_DATA does not count"
        rules.append(Rule("shmget", errno_module.EINVAL, ((1, "GT", shm_max, 0),), why, direct=True))
        # 32-bit x86 programs (and s390, ppc ones) call shmget through ipc(SHMGET, key, size, flags): there
        # the size is the third argument. (The direct x86 shmget, which glibc does not use there, stays open:
        # libseccomp cannot name it apart from the multiplexer.) ipc's call number is its low 16 bits.
        rules.append(Rule("ipc", errno_module.EINVAL, ((0, "MASKED_EQ", 0xFFFF, SHMGET), (2, "GT", shm_max, 0)),
                          why, optional=True))
    if shared_map_max is not None:
        # RLIMIT_DATA counts private writable mappings only: a MAP_SHARED|MAP_ANONYMOUS one is shmem that no
        # rlimit counts (RLIMIT_AS did). ENOMEM, what the kernel says over a limit. MAP_SHARED is bit 0 of
        # the mapping type (MAP_SHARED_VALIDATE has it too); the length is the second argument (mmap2 too).
        # (A MAP_SHARED mapping of /dev/zero is the same memory; seccomp cannot tell its fd from a file's.)
        shared_anon = MAP_SHARED | map_anonymous(arch)
        why = (f"shared anonymous mappings above {shared_map_max} bytes: memory that RLIMIT_DATA does not count")
        args = ((1, "GT", shared_map_max, 0), (3, "MASKED_EQ", shared_anon, shared_anon))
        rules += [Rule("mmap", errno_module.ENOMEM, args, why),
                  Rule("mmap2", errno_module.ENOMEM, args, why, optional=True)]
    return rules


def map_anonymous(arch: HostArch) -> int:
    """MAP_ANONYMOUS on `arch`: 0x20 but on MIPS, PA-RISC and Alpha."""
    if arch.machine.startswith("mips"):
        return 0x800
    return 0x10 if arch.machine.startswith(("parisc", "alpha")) else 0x20


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
              shm_max: int | None = None, shared_map_max: int | None = None,
              arch: HostArch | None = None) -> list[Rule] | None:
    """The rules for a profile's `security.seccomp` ("default", "none" or a rule file's path, whose rules,
    read in the spec stage, are `file_rules`); None: no filter. The plan's only way to them.

    A rule file adds to the default rules: it can refuse more or change an errno, never allow what they refuse.
    The other keyword arguments are default_rules'.
    """
    if seccomp == "none":
        return None
    return default_rules(nested_userns, net_mode=net_mode, setuid_bits=setuid_bits,
                         socket_families=tuple(socket_families), limit_memfd=limit_memfd,
                         shm_max=shm_max, shared_map_max=shared_map_max, arch=arch) + list(file_rules)

