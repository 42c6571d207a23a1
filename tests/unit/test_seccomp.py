"""The seccomp filter: the default rules, rule files, and what the kernel does once the filter is loaded.

The filters are loaded in forked children (a filter cannot be removed), which report through a pipe. These
tests may run as root: every probe passes arguments that the kernel refuses (bad pointers, bad flags, bad
magic numbers), so nothing happens even when a call gets past the filter.
"""

import ctypes
import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
import termios
import traceback

import pytest
from hypothesis import given, strategies as st

from rootsand import seccomp
from rootsand.errors import RootsandError

pyseccomp = pytest.importorskip("pyseccomp")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER = 0x10000000
CLONE_FILES = 0x400
SIGCHLD = 17
TIOCLINUX = 0x541C
HIGH = 1 << 32  # the kernel truncates ioctl requests to 32 bits: this bit must not get a request past the filter
MARKER = errno.ENOTRECOVERABLE  # an errno no probe below gets from the kernel itself

PLAIN = ("keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module",
         "delete_module", "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at", "acct", "swapon", "swapoff",
         "reboot")
MOUNT_API = ("open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")
USERNS = ("unshare", "clone", "clone3")


def nr(name: str) -> int:
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def sc(name: str, *args: int) -> int:
    """The raw system call: 0 on success, else its errno (no libc wrapper in the way)."""
    ctypes.set_errno(0)
    result = libc.syscall(ctypes.c_long(nr(name)), *(ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args))
    return ctypes.get_errno() if result == -1 else 0


def ioctl(request: int) -> int:
    # fcntl.ioctl truncates the request to 32 bits; /dev/null, not fd 0: never a real terminal.
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        char = ctypes.c_char(b"x")
        ctypes.set_errno(0)
        result = libc.syscall(ctypes.c_long(nr("ioctl")), ctypes.c_long(fd), ctypes.c_ulong(request),
                              ctypes.byref(char))
        return ctypes.get_errno() if result == -1 else 0
    finally:
        os.close(fd)


def clone(flags: int) -> int:
    """Raw clone with a NULL stack: fork-like; the child leaves at once."""
    args = (0, flags | SIGCHLD) if os.uname().machine.startswith("s390") else (flags | SIGCHLD, 0)
    ctypes.set_errno(0)
    pid = libc.syscall(ctypes.c_long(nr("clone")), *(ctypes.c_ulong(a) for a in args), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0))
    if pid == 0:
        os._exit(0)
    if pid < 0:
        return ctypes.get_errno()
    os.waitpid(pid, 0)
    return 0


def isolated(probe):
    """Run a probe that changes the process (a new user namespace) in a forked child: its result is the exit code."""
    def run() -> int:
        pid = os.fork()
        if pid == 0:
            os._exit(probe())
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return run


def spawn_true() -> int:
    """posix_spawn uses clone3 in glibc >= 2.34, and must fall back to clone when clone3 says ENOSYS."""
    pid = os.posix_spawn("/bin/true", ["true"], {})
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# One probe per default rule, with arguments the kernel refuses if the call gets through.
PROBES = {
    "keyctl": lambda: sc("keyctl", 9999, 0, 0, 0, 0),  # no such operation
    "add_key": lambda: sc("add_key", 0, 0, 0, 0, 0),  # NULL type
    "request_key": lambda: sc("request_key", 0, 0, 0, 0),
    "kexec_load": lambda: sc("kexec_load", 0, 1000, 0, 0x80000000),  # too many segments, unknown arch
    "kexec_file_load": lambda: sc("kexec_file_load", -1, -1, 0, 0, 0x80000000),  # unknown flag
    "init_module": lambda: sc("init_module", 0, 0, 0),  # an empty image
    "finit_module": lambda: sc("finit_module", -1, 0, 0),  # bad fd
    "delete_module": lambda: sc("delete_module", 0, 0),  # NULL name
    "bpf": lambda: sc("bpf", 9999, 0, 0),  # no such command
    "perf_event_open": lambda: sc("perf_event_open", 0, 0, -1, -1, 0),  # NULL attr
    "userfaultfd": lambda: sc("userfaultfd", 0x80000001),  # unknown flag
    "open_by_handle_at": lambda: sc("open_by_handle_at", -1, 0, 0),
    "acct": lambda: sc("acct", 1),  # bad pointer (NULL would turn accounting off)
    "swapon": lambda: sc("swapon", 1, 0),
    "swapoff": lambda: sc("swapoff", 1),
    "reboot": lambda: sc("reboot", 0, 0, 0, 0),  # bad magic
    "open_tree": lambda: sc("open_tree", -1, 0, 0),
    "move_mount": lambda: sc("move_mount", -1, 0, -1, 0, 0),
    "fsopen": lambda: sc("fsopen", 0, 0),
    "fsconfig": lambda: sc("fsconfig", -1, 0, 0, 0, 0),
    "fsmount": lambda: sc("fsmount", -1, 0, 0),
    "fspick": lambda: sc("fspick", -1, 0, 0),
    "mount_setattr": lambda: sc("mount_setattr", -1, 0, 0, 0, 0),
    "TIOCSTI": lambda: ioctl(termios.TIOCSTI),
    "TIOCSTI|1<<32": lambda: ioctl(termios.TIOCSTI | HIGH),
    "TIOCLINUX": lambda: ioctl(TIOCLINUX),
    "TIOCLINUX|1<<32": lambda: ioctl(TIOCLINUX | HIGH),
    "personality(ADDR_NO_RANDOMIZE)": lambda: sc("personality", 0x0040000),
    "personality(READ_IMPLIES_EXEC)": lambda: sc("personality", 0x0400000),
    "personality(0x80040000)": lambda: sc("personality", 0x80040000),  # unused high bits do not help
    "unshare(CLONE_NEWUSER)": isolated(lambda: sc("unshare", CLONE_NEWUSER)),
    "clone(CLONE_NEWUSER)": lambda: clone(CLONE_NEWUSER),
    "clone3": lambda: sc("clone3", 0, 0),  # NULL args: EINVAL when allowed
}
# What stays allowed under every filter.
HARMLESS = {
    "getpid": lambda: sc("getpid"),
    "TCGETS": lambda: ioctl(termios.TCGETS),  # ENOTTY from /dev/null: the call got through
    "personality(query)": lambda: sc("personality", 0xFFFFFFFF),
    "personality(PER_LINUX)": lambda: sc("personality", 0),
    "unshare(CLONE_FILES)": isolated(lambda: sc("unshare", CLONE_FILES)),  # only CLONE_NEWUSER is refused
    "fork": lambda: clone(0),
    "posix_spawn": spawn_true,
    "Seccomp": lambda: open("/proc/self/status").read().split("Seccomp:")[1].split()[0],
}


def in_filtered_child(rules, probes) -> dict:
    """{name: result} of each probe, run in a forked child after the launcher's last steps: NNP, install."""
    prepared = seccomp.prepare(rules)  # in the parent, as the launcher does before pivot_root
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl")
            seccomp.install(prepared)
            out = {name: probe() for name, probe in probes.items()}
        except BaseException:
            out = {"error": traceback.format_exc()}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    out = json.loads(data)
    assert "error" not in out, out.get("error")
    return out


# ---------------------------------------------------------------------------------------------- the rule set

def by_name(rules):
    out = {}
    for rule in rules:
        out.setdefault(rule.syscall, []).append(rule)
    return out


def test_default_rules_name_every_call():
    rules = by_name(seccomp.default_rules(nested_userns=False))
    for name in PLAIN:
        assert [(r.errno, r.args) for r in rules[name]] == [(errno.EPERM, ())], name
    for name in MOUNT_API:
        assert [(r.errno, r.args) for r in rules[name]] == [(errno.ENOSYS, ())], name
    ioctls = {r.args for r in rules["ioctl"]}
    assert ioctls == {((1, "MASKED_EQ", 0xFFFFFFFF, termios.TIOCSTI),), ((1, "MASKED_EQ", 0xFFFFFFFF, TIOCLINUX),)}
    assert all(r.errno == errno.EPERM for r in rules["ioctl"] + rules["personality"])
    flags_arg = 1 if os.uname().machine.startswith("s390") else 0
    assert [(r.errno, r.args) for r in rules["unshare"]] == [(errno.EPERM, ((0, "MASKED_EQ", CLONE_NEWUSER,
                                                                              CLONE_NEWUSER),))]
    assert [(r.errno, r.args) for r in rules["clone"]] == [(errno.EPERM, ((flags_arg, "MASKED_EQ", CLONE_NEWUSER,
                                                                            CLONE_NEWUSER),))]
    assert [(r.errno, r.args) for r in rules["clone3"]] == [(errno.ENOSYS, ())]
    assert all(r.why for r in seccomp.default_rules(nested_userns=False))


def test_user_namespace_rules_only_without_nested_userns():
    nested = by_name(seccomp.default_rules(nested_userns=True))
    strict = by_name(seccomp.default_rules(nested_userns=False))
    assert not set(USERNS) & set(nested)
    assert set(strict) - set(nested) == set(USERNS)


def refused_by(rules, syscall: str, args: tuple[int, ...]) -> bool:
    """What a filter of these rules does with a call, evaluated in Python (args as the kernel sees them)."""
    compare = {"EQ": lambda v, a, b: v == a, "NE": lambda v, a, b: v != a, "LT": lambda v, a, b: v < a,
               "LE": lambda v, a, b: v <= a, "GT": lambda v, a, b: v > a, "GE": lambda v, a, b: v >= a,
               "MASKED_EQ": lambda v, a, b: v & a == b}
    return any(r.syscall == syscall and all(compare[op](args[i], a, b) for i, op, a, b in r.args) for r in rules)


@given(st.integers(0, 0xFFFFFFFF))
def test_personality_refuses_exactly_the_aslr_flags_but_not_the_query(value):
    rules = seccomp.default_rules(nested_userns=True)
    weakening = value & (seccomp.ADDR_NO_RANDOMIZE | seccomp.READ_IMPLIES_EXEC) != 0
    assert refused_by(rules, "personality", (value,)) == (weakening and value != 0xFFFFFFFF)


def test_personality_values_next_to_the_query():
    # All bits but one: where a rule for a missing bit would let a weakening value through as "the query".
    rules = seccomp.default_rules(nested_userns=True)
    for bit in range(32):
        value = 0xFFFFFFFF ^ 1 << bit
        weakening = value & (seccomp.ADDR_NO_RANDOMIZE | seccomp.READ_IMPLIES_EXEC) != 0
        assert refused_by(rules, "personality", (value,)) == weakening, hex(value)
    assert not refused_by(rules, "personality", (0xFFFFFFFF,))


def test_default_rules_do_not_import_pyseccomp():
    # Start-up time: only prepare() and load_rule_file() may pay for pyseccomp.
    code = "import sys; from rootsand import seccomp; seccomp.default_rules(False); print('pyseccomp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_rules_for_profile_values(tmp_path):
    assert seccomp.rules_for("none", False) is None
    assert seccomp.rules_for("default", True) == seccomp.default_rules(True)
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nsyscall = "uname"\n')
    assert seccomp.rules_for(str(path), True) == seccomp.default_rules(True) + [seccomp.Rule("uname", errno.EPERM)]


# ---------------------------------------------------------------------------------------------- prepare, install

def test_prepare_builds_a_filter_for_native_and_compat_arches(tmp_path):
    prepared = seccomp.prepare(seccomp.default_rules(nested_userns=False))
    with open(tmp_path / "f.bpf", "wb") as f:
        prepared.export_bpf(f)
    assert (tmp_path / "f.bpf").stat().st_size > 0
    with open(tmp_path / "f.pfc", "w") as f:
        prepared.export_pfc(f)
    pfc = (tmp_path / "f.pfc").read_text()
    if os.uname().machine == "x86_64":
        for arch in ("x86_64", "x86", "x32"):  # 32-bit programs cannot walk around the filter
            assert f"# filter for arch {arch} (" in pfc


def test_prepare_refuses_what_libseccomp_cannot_do():
    with pytest.raises(RootsandError, match="libseccomp does not know this system call"):
        seccomp.prepare([seccomp.Rule("fooo", errno.EPERM)])
    two_on_one_arg = seccomp.Rule("ioctl", errno.EPERM, ((1, "EQ", 1, 0), (1, "EQ", 2, 0)))
    with pytest.raises(RootsandError, match=r"ioctl\(arg1 EQ 0x1, arg1 EQ 0x2\): libseccomp refused it") as e:
        seccomp.prepare([two_on_one_arg])
    assert "seccomp = \"none\"" in e.value.hint


def test_install_turns_load_errors_into_rootsand_errors():
    class Refused:
        def load(self):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    with pytest.raises(RootsandError, match="cannot install the seccomp filter: Invalid argument") as e:
        seccomp.install(Refused())
    assert "CONFIG_SECCOMP_FILTER" in e.value.hint


# ---------------------------------------------------------------------------------------------- in the kernel

def test_every_default_rule_matches_its_call():
    # Each rule with a marker errno: a probe that gets MARKER was stopped by the filter, not by the kernel.
    rules = [dataclasses.replace(r, errno=MARKER) for r in seccomp.default_rules(nested_userns=False)]
    harmless = {name: probe for name, probe in HARMLESS.items() if name != "posix_spawn"}  # needs clone3's ENOSYS
    got = in_filtered_child(rules, {**PROBES, **harmless})
    assert {name: got[name] for name in PROBES} == {name: MARKER for name in PROBES}
    assert {name: got[name] for name in harmless} == {**dict.fromkeys(harmless, 0), "TCGETS": errno.ENOTTY,
                                                       "Seccomp": "2"}


def test_default_filter_without_nested_userns():
    got = in_filtered_child(seccomp.default_rules(nested_userns=False), {**PROBES, **HARMLESS})
    assert got["keyctl"] == errno.EPERM
    assert got["TIOCSTI"] == got["TIOCSTI|1<<32"] == got["TIOCLINUX"] == got["TIOCLINUX|1<<32"] == errno.EPERM
    assert got["unshare(CLONE_NEWUSER)"] == got["clone(CLONE_NEWUSER)"] == errno.EPERM
    assert got["clone3"] == got["open_tree"] == got["mount_setattr"] == errno.ENOSYS
    assert got["personality(ADDR_NO_RANDOMIZE)"] == errno.EPERM
    assert got["getpid"] == got["fork"] == got["posix_spawn"] == got["personality(query)"] == 0
    assert got["TCGETS"] == errno.ENOTTY


def test_default_filter_with_nested_userns():
    got = in_filtered_child(seccomp.default_rules(nested_userns=True), {**PROBES, **HARMLESS})
    assert got["unshare(CLONE_NEWUSER)"] == got["clone(CLONE_NEWUSER)"] == 0
    assert got["clone3"] == errno.EINVAL  # reached the kernel, which refuses NULL arguments
    assert got["keyctl"] == got["TIOCSTI|1<<32"] == errno.EPERM
    assert got["posix_spawn"] == 0


# ---------------------------------------------------------------------------------------------- policy rules

AF_UNIX, AF_TIPC, AF_ALG, AF_VSOCK, AF_KCM = 1, 30, 38, 40, 41
SOCK_STREAM, SOCK_SEQPACKET = 1, 5
AT_FDCWD = -100
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0
S_IFREG = 0o100000
ALL_OPTIONS = {"limit_memfd": True, "shm_max": 64 << 20}  # every new rule on (net_mode none, setuid_bits false)
HAVE_FCHMODAT2 = seccomp._kernel_has("fchmodat2")  # Linux 6.6
_keep = []  # C strings handed to raw system calls


def cstr(text: str) -> int:
    buf = ctypes.create_string_buffer(text.encode())
    _keep.append(buf)
    return ctypes.addressof(buf)


def shm(size: int) -> int:
    """shmget of a private segment, removed at once: 0 or the errno."""
    ctypes.set_errno(0)
    shmid = libc.syscall(ctypes.c_long(nr("shmget")), ctypes.c_long(IPC_PRIVATE), ctypes.c_ulong(size),
                         ctypes.c_long(IPC_CREAT | 0o600))
    if shmid == -1:
        return ctypes.get_errno()
    libc.syscall(ctypes.c_long(nr("shmctl")), ctypes.c_long(shmid), ctypes.c_long(IPC_RMID), ctypes.c_long(0))
    return 0


def memfd() -> int:
    try:
        os.close(os.memfd_create("probe"))
        return 0
    except OSError as e:
        return e.errno


def policy_probes(d: str) -> dict:
    """A probe for each policy rule and for the same call without the risky argument, in directory d
    (made by the parent: d/f exists with mode 0644)."""
    f = f"{d}/f"
    fd = os.open(f, os.O_RDONLY)  # opened in the parent, inherited: fchmod needs no open in the child
    return {
        "socket(AF_VSOCK)": lambda: sc("socket", AF_VSOCK, SOCK_STREAM, 0),
        "socket(AF_VSOCK|1<<32)": lambda: sc("socket", AF_VSOCK | HIGH, SOCK_STREAM, 0),  # the kernel reads an int
        "socket(AF_KCM)": lambda: sc("socket", AF_KCM, SOCK_SEQPACKET, 0),
        "socket(AF_TIPC)": lambda: sc("socket", AF_TIPC, SOCK_SEQPACKET, 0),
        "socket(AF_ALG)": lambda: sc("socket", AF_ALG, SOCK_SEQPACKET, 0),
        "socketpair(AF_VSOCK)": lambda: sc("socketpair", AF_VSOCK, SOCK_STREAM, 0, 0),  # NULL fds: EFAULT if it ran
        "socketpair(AF_ALG)": lambda: sc("socketpair", AF_ALG, SOCK_SEQPACKET, 0, 0),
        "chmod 4755": lambda: sc("chmod", cstr(f), 0o4755),
        "chmod 2755": lambda: sc("chmod", cstr(f), 0o2755),
        "chmod 4755|1<<32": lambda: sc("chmod", cstr(f), 0o4755 | HIGH),
        "fchmod 4755": lambda: sc("fchmod", fd, 0o4755),
        "fchmod 6755": lambda: sc("fchmod", fd, 0o6755),
        "fchmodat 4755": lambda: sc("fchmodat", AT_FDCWD, cstr(f), 0o4755),
        "fchmodat 2755": lambda: sc("fchmodat", AT_FDCWD, cstr(f), 0o2755),
        "fchmodat2 4755": lambda: sc("fchmodat2", AT_FDCWD, cstr(f), 0o4755, 0),
        "fchmodat2 2755": lambda: sc("fchmodat2", AT_FDCWD, cstr(f), 0o2755, 0),
        "open O_CREAT 4755": lambda: sc("open", cstr(f"{d}/open-suid"), os.O_CREAT | os.O_WRONLY, 0o4755),
        "openat O_CREAT 2755": lambda: sc("openat", AT_FDCWD, cstr(f"{d}/openat-sgid"), os.O_CREAT | os.O_WRONLY,
                                          0o2755),
        "creat 4755": lambda: sc("creat", cstr(f"{d}/creat-suid"), 0o4755),
        "mknod S_IFREG|4755": lambda: sc("mknod", cstr(f"{d}/mknod-suid"), S_IFREG | 0o4755, 0),
        "mknodat S_IFREG|2755": lambda: sc("mknodat", AT_FDCWD, cstr(f"{d}/mknodat-sgid"), S_IFREG | 0o2755, 0),
        "openat2": lambda: sc("openat2", AT_FDCWD, 0, 0, 0),  # usize 0: EINVAL if it ran
        "memfd_create": memfd,
        "memfd_secret": lambda: sc("memfd_secret", 0xFFFFFFFF),  # unknown flags: EINVAL (ENOSYS: secretmem off)
        "shmget 64M+1": lambda: shm((64 << 20) + 1),
        "shmget 100M": lambda: shm(100 << 20),
    }


def allowed_probes(d: str) -> dict:
    """The same calls without the risky argument: allowed under every filter."""
    f = f"{d}/f"
    return {
        "socket(AF_UNIX)": lambda: sc("socket", AF_UNIX, SOCK_STREAM, 0),
        "socketpair(AF_UNIX)": lambda: socketpair_unix(),
        "chmod 0755": lambda: sc("chmod", cstr(f), 0o755),
        "chmod 1777": lambda: sc("chmod", cstr(f), 0o1777),  # the sticky bit is not setuid
        "fchmodat2 0644": lambda: sc("fchmodat2", AT_FDCWD, cstr(f), 0o644, 0),
        "open O_CREAT 0644": lambda: sc("open", cstr(f"{d}/open-plain"), os.O_CREAT | os.O_WRONLY, 0o644),
        "open O_RDONLY": lambda: sc("open", cstr(f), os.O_RDONLY, 0),
        "python open": lambda: open(f"{d}/python-open", "w").close() or 0,
        "mknod S_IFREG|0644": lambda: sc("mknod", cstr(f"{d}/mknod-plain"), S_IFREG | 0o644, 0),
        "mkdir 2775": lambda: sc("mkdir", cstr(f"{d}/dir"), 0o2775),  # the kernel ignores S_ISGID here
        "shmget 1M": lambda: shm(1 << 20),
        "shmget 64M": lambda: shm(64 << 20),  # the limit itself
    }


def allowed_results(d: str) -> dict:
    """What each allowed probe returns: 0, but the kernel's ENOSYS for fchmodat2 before Linux 6.6."""
    return {**dict.fromkeys(allowed_probes(d), 0), "fchmodat2 0644": 0 if HAVE_FCHMODAT2 else errno.ENOSYS}


def socketpair_unix() -> int:
    fds = (ctypes.c_int * 2)()
    return sc("socketpair", AF_UNIX, SOCK_STREAM, 0, ctypes.addressof(fds))


@pytest.fixture
def probe_dir(tmp_path):
    (tmp_path / "f").write_text("x")
    (tmp_path / "f").chmod(0o644)
    return str(tmp_path)


def marked(rules):
    return [dataclasses.replace(r, errno=MARKER) for r in rules]


def test_socket_family_rules():
    rules = by_name(seccomp.default_rules(nested_userns=True))
    for call in ("socket", "socketpair"):
        assert sorted((r.errno, r.args, r.direct) for r in rules[call]) == sorted(
            (errno.EAFNOSUPPORT, ((0, "MASKED_EQ", 0xFFFFFFFF, family),), True) for family in (30, 38, 40, 41))
    slirp = by_name(seccomp.default_rules(True, net_mode="slirp"))
    assert slirp["socket"] == rules["socket"] and slirp["socketpair"] == rules["socketpair"]
    host = by_name(seccomp.default_rules(True, net_mode="host"))
    assert "socket" not in host and "socketpair" not in host
    some = by_name(seccomp.default_rules(True, socket_families=("AF_ALG", "AF_VSOCK")))
    assert sorted(r.args[0][3] for r in some["socket"]) == sorted(r.args[0][3] for r in some["socketpair"]) == [30, 41]
    assert "socket" not in by_name(seccomp.default_rules(True, socket_families=tuple(seccomp.SOCKET_FAMILIES)))
    with pytest.raises(ValueError, match="AF_INET"):
        seccomp.default_rules(True, socket_families=("AF_INET",))


def test_setuid_rules():
    rules = by_name(seccomp.default_rules(nested_userns=True))
    expected = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "open": 2, "openat": 3, "creat": 1,
                "mknod": 1, "mknodat": 2}
    for call, index in expected.items():
        assert sorted((r.errno, r.args) for r in rules[call]) == [
            (errno.EPERM, ((index, "MASKED_EQ", 0o2000, 0o2000),)),
            (errno.EPERM, ((index, "MASKED_EQ", 0o4000, 0o4000),))], call
        assert all(r.optional == (call in ("chmod", "open", "creat", "mknod")) for r in rules[call])
    assert [(r.errno, r.args) for r in rules["openat2"]] == [(errno.ENOSYS, ())]
    allowed = by_name(seccomp.default_rules(True, setuid_bits=True))
    assert not (set(expected) | {"openat2"}) & set(allowed)


def test_memory_rules():
    plain = by_name(seccomp.default_rules(True))
    assert not {"memfd_create", "memfd_secret", "shmget", "ipc"} & set(plain)
    memfd = by_name(seccomp.default_rules(True, limit_memfd=True))
    assert [(r.errno, r.args) for r in memfd["memfd_create"] + memfd["memfd_secret"]] == [(errno.ENOSYS, ())] * 2
    assert "shmget" not in memfd
    shm = by_name(seccomp.default_rules(True, shm_max=1000))
    assert "memfd_create" not in shm
    assert [(r.errno, r.args, r.direct) for r in shm["shmget"]] == [(errno.EINVAL, ((1, "GT", 1000, 0),), True)]
    assert [(r.errno, r.args, r.optional) for r in shm["ipc"]] == [
        (errno.EINVAL, ((0, "MASKED_EQ", 0xFFFF, 23), (2, "GT", 1000, 0)), True)]
    for bad in (-1, 1.5, True, "64M", 1 << 64):
        with pytest.raises(ValueError, match="shm_max"):
            seccomp.default_rules(True, shm_max=bad)
    assert all(r.why for r in seccomp.default_rules(False, **ALL_OPTIONS))


def test_rules_for_passes_the_options_on():
    options = dict(net_mode="slirp", setuid_bits=True, socket_families=["AF_ALG"], limit_memfd=True, shm_max=5)
    assert seccomp.rules_for("default", False, **options) == seccomp.default_rules(
        False, **{**options, "socket_families": ("AF_ALG",)})
    assert seccomp.rules_for("default", True) == seccomp.default_rules(True)
    assert seccomp.rules_for("none", True, setuid_bits=True) is None


def test_policy_rules_in_the_kernel(probe_dir):
    rules = seccomp.default_rules(nested_userns=True, **ALL_OPTIONS)
    got = in_filtered_child(rules, {**policy_probes(probe_dir), **allowed_probes(probe_dir)})
    refused = {name: got[name] for name in policy_probes(probe_dir)}
    assert refused == {**dict.fromkeys(refused, errno.EPERM),
                       **{name: errno.EAFNOSUPPORT for name in refused if name.startswith("socket")},
                       "openat2": errno.ENOSYS, "memfd_create": errno.ENOSYS, "memfd_secret": errno.ENOSYS,
                       "shmget 64M+1": errno.EINVAL, "shmget 100M": errno.EINVAL}
    assert {name: got[name] for name in allowed_probes(probe_dir)} == allowed_results(probe_dir)
    # Nothing refused left a file or a bit behind.
    assert sorted(os.listdir(probe_dir)) == ["dir", "f", "mknod-plain", "open-plain", "python-open"]
    assert all(not os.stat(f"{probe_dir}/{name}").st_mode & 0o6000 for name in os.listdir(probe_dir)
               if name != "dir")


def test_each_policy_rule_matches_its_call(probe_dir):
    # With a marker errno: a probe that gets MARKER was stopped by the filter, whatever the kernel would say
    # (this kernel may lack AF_TIPC or AF_ALG and say EAFNOSUPPORT itself).
    rules = marked(seccomp.default_rules(nested_userns=True, **ALL_OPTIONS))
    got = in_filtered_child(rules, {**policy_probes(probe_dir), **allowed_probes(probe_dir)})
    assert {name: got[name] for name in policy_probes(probe_dir)} == dict.fromkeys(policy_probes(probe_dir), MARKER)
    assert {name: got[name] for name in allowed_probes(probe_dir)} == allowed_results(probe_dir)


def test_policy_rules_absent_when_the_options_say_so(probe_dir, tmp_path):
    rules = marked(seccomp.default_rules(nested_userns=True, net_mode="host", setuid_bits=True))
    got = in_filtered_child(rules, policy_probes(probe_dir))
    assert MARKER not in got.values(), got
    # The kernel's own answers, from the same probes in a second directory under a filter without rules.
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "f").write_text("x")
    assert got == in_filtered_child([], policy_probes(str(tmp_path / "kernel")))
    for name in ("chmod 4755", "chmod 2755", "chmod 4755|1<<32", "fchmod 4755", "fchmod 6755", "fchmodat 4755",
                 "open O_CREAT 4755", "openat O_CREAT 2755", "creat 4755", "mknod S_IFREG|4755",
                 "mknodat S_IFREG|2755", "memfd_create", "shmget 100M"):
        assert got[name] == 0, name  # the calls ran
    assert os.stat(f"{probe_dir}/open-suid").st_mode & 0o4000  # the bit is on the file


def test_allowed_socket_family_reaches_the_kernel(probe_dir):
    rules = marked(seccomp.default_rules(nested_userns=True, net_mode="slirp", socket_families=("AF_VSOCK",)))
    got = in_filtered_child(rules, policy_probes(probe_dir))
    assert got["socket(AF_VSOCK)"] != MARKER and got["socketpair(AF_VSOCK)"] != MARKER
    assert got["socket(AF_ALG)"] == got["socket(AF_KCM)"] == got["socket(AF_TIPC)"] == MARKER
    assert got["chmod 4755"] == MARKER and got["memfd_create"] == 0 and got["shmget 100M"] == 0


# ---------------------------------------------------------------------------------------------- architectures

def pfc_sections(prepared, tmp_path) -> dict[str, str]:
    """The exported filter's text for each architecture."""
    with open(tmp_path / "f.pfc", "w") as f:
        prepared.export_pfc(f)
    text = (tmp_path / "f.pfc").read_text()
    return {part.split(" ", 1)[0]: part for part in text.split("# filter for arch ")[1:]}


x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the compat arches of x86-64")


@x86_64_only
def test_x86_multiplexers_are_left_alone(tmp_path):
    sections = pfc_sections(seccomp.prepare(seccomp.default_rules(True, **ALL_OPTIONS)), tmp_path)
    assert set(sections) == {"x86_64", "x86", "x32"}
    for arch in ("x86_64", "x32"):
        assert '"socket"' in sections[arch] and '"socketpair"' in sections[arch] and '"shmget"' in sections[arch]
    x86 = sections["x86"]
    # No rule that refuses every 32-bit socket (socketcall(SYS_SOCKET)) or compares ipc's key as a size.
    assert '"socketcall"' not in x86 and '"socket"' not in x86 and '"socketpair"' not in x86
    assert '"shmget"' not in x86
    ipc = x86.split('"ipc" (117)')[1].split("# filter for syscall")[0]
    assert "$a0 & 0x0000ffff == 23" in ipc and f"$a2 > {64 << 20}" in ipc and "$a1" not in ipc
    assert '"fchmodat2"' in x86 and '"chmod" (15)' in x86  # the rest is there


@x86_64_only
def test_wide_data_on_32bit_arches(tmp_path):
    # libseccomp would compare the low 32 bits of 8G (0) on x86 and x32: every shmget refused there.
    sections = pfc_sections(seccomp.prepare(seccomp.default_rules(True, shm_max=8 << 30)), tmp_path)
    assert '"shmget"' in sections["x86_64"] and '"shmget"' not in sections["x32"]
    assert '"ipc"' not in sections["x86"]
    assert seccomp._fit_32bit(((1, "GT", 8 << 30, 0),)) is None
    assert seccomp._fit_32bit(((1, "LT", 8 << 30, 0), (0, "EQ", 3, 0))) == ((0, "EQ", 3, 0),)
    assert seccomp._fit_32bit(((0, "MASKED_EQ", seccomp.U64, 5),)) == ((0, "MASKED_EQ", 0xFFFFFFFF, 5),)
    assert seccomp._fit_32bit(((0, "MASKED_EQ", seccomp.U64, 1 << 40),)) is None
    assert seccomp._fit_32bit(((0, "MASKED_EQ", 0xF0, 0x0F),)) is None  # no value matches, 32 bits or 64


def test_new_call_unknown_to_libseccomp(tmp_path, probe_dir, monkeypatch):
    # An older libseccomp (before 2.5.5) without fchmodat2 on a kernel (6.6+) that has it: by number, natively.
    resolve = seccomp._resolve
    monkeypatch.setattr(seccomp, "_resolve",
                        lambda p, arch, name: -1 if name == "fchmodat2" else resolve(p, arch, name))
    assert seccomp._syscall_known("fchmodat2", seccomp._known_arches())
    rules = seccomp.default_rules(nested_userns=True)
    sections = pfc_sections(seccomp.prepare(rules), tmp_path)
    native = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine)
    if native and HAVE_FCHMODAT2:
        assert "(452)" in sections[native] and all("(452)" not in text for arch, text in sections.items()
                                                   if arch != native)
    got = in_filtered_child(rules, {"fchmodat2 4755": policy_probes(probe_dir)["fchmodat2 4755"],
                                    "fchmodat2 0644": allowed_probes(probe_dir)["fchmodat2 0644"]})
    if HAVE_FCHMODAT2:
        assert got == {"fchmodat2 4755": errno.EPERM, "fchmodat2 0644": 0}
    else:  # the kernel lacks the call: no rule, and the kernel says so
        assert got == {"fchmodat2 4755": errno.ENOSYS, "fchmodat2 0644": errno.ENOSYS}
    # A kernel without the call needs no rule.
    monkeypatch.setattr(seccomp, "_kernel_has", lambda name: False)
    sections = pfc_sections(seccomp.prepare(rules), tmp_path)
    assert all("(452)" not in text for text in sections.values())
    # Other unknown calls still fail closed; optional ones are left out.
    monkeypatch.setattr(seccomp, "_resolve", lambda p, arch, name: -1 if name in ("clone3", "ipc")
                        else resolve(p, arch, name))
    with pytest.raises(RootsandError, match="seccomp rule for clone3: libseccomp does not know"):
        seccomp.prepare(seccomp.default_rules(nested_userns=False))
    sections = pfc_sections(seccomp.prepare(seccomp.default_rules(True, shm_max=5)), tmp_path)
    assert all('"ipc"' not in text for text in sections.values())


def test_kernel_probe_for_new_calls(monkeypatch):
    release = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    if release >= (6, 6):  # fchmodat2's kernel; openat2 came in 5.6
        assert seccomp._kernel_has("fchmodat2") and seccomp._kernel_has("openat2")
    monkeypatch.setitem(seccomp._NEW_CALLS, "nosuchcall", (1023, (0,)))  # no kernel has a call 1023 (yet)
    assert not seccomp._kernel_has("nosuchcall")


def test_a_rule_file_changing_a_direct_rule_keeps_it_direct(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nsyscall = "socket"\nerrno = "EACCES"\n'
                    'args = [{ index = 0, op = "MASKED_EQ", mask = 0xFFFFFFFF, value = 40 }]\n')
    rules = seccomp.rules_for(str(path), True)
    if os.uname().machine == "x86_64":
        sections = pfc_sections(seccomp.prepare(rules), tmp_path)
        assert '"socketcall"' not in sections["x86"] and "ERRNO(13)" in sections["x86_64"]
    got = in_filtered_child(rules, {"socket(AF_VSOCK)": lambda: sc("socket", AF_VSOCK, SOCK_STREAM, 0)})
    assert got == {"socket(AF_VSOCK)": errno.EACCES}


# ---------------------------------------------------------------------------------------------- rule files

VALID = """\
# extra rules
[[rule]]
syscall = "uname"

[[rule]]
syscall = "getpriority"
errno = "EACCES"
args = [{ index = 0, op = "EQ", value = 1 }]   # PRIO_PGRP only
why = "a test"

[[rule]]
syscall = "keyctl"
errno = 13
args = []

[[rule]]
syscall = "ioctl"
args = [{ index = 1, op = "MASKED_EQ", mask = 0xFFFFFFFF, value = 0x5413 }, { index = 0, op = "GE", value = 3 }]
"""


def test_rule_file(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(VALID)
    assert seccomp.load_rule_file(str(path)) == [
        seccomp.Rule("uname", errno.EPERM),
        seccomp.Rule("getpriority", errno.EACCES, ((0, "EQ", 1, 0),), "a test"),
        seccomp.Rule("keyctl", errno.EACCES),
        seccomp.Rule("ioctl", errno.EPERM, ((1, "MASKED_EQ", 0xFFFFFFFF, 0x5413), (0, "GE", 3, 0))),
    ]
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    assert seccomp.load_rule_file(str(tmp_path / "empty.toml")) == []


def test_rule_file_rules_in_the_kernel(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(VALID)
    rules = seccomp.default_rules(nested_userns=True) + seccomp.load_rule_file(str(path))

    def getpriority(which):
        try:
            os.getpriority(which, 0)
            return 0
        except OSError as e:
            return e.errno

    got = in_filtered_child(rules, {
        "uname": lambda: sc("uname", 0),  # refused before the kernel looks at the NULL buffer
        "PRIO_PGRP": lambda: getpriority(os.PRIO_PGRP),
        "PRIO_PROCESS": lambda: getpriority(os.PRIO_PROCESS),
        "keyctl": PROBES["keyctl"],  # the file's errno replaces the default rule's
        "TIOCGWINSZ on fd 0": lambda: sc("ioctl", 0, termios.TIOCGWINSZ, 0),
        "TIOCGWINSZ on fd 3+": lambda: ioctl(termios.TIOCGWINSZ),
    })
    assert got.pop("TIOCGWINSZ on fd 0") != errno.EPERM  # EFAULT or ENOTTY, whatever fd 0 is
    assert got == {"uname": errno.EPERM, "PRIO_PGRP": errno.EACCES, "PRIO_PROCESS": 0, "keyctl": errno.EACCES,
                   "TIOCGWINSZ on fd 3+": errno.EPERM}


RULE = '[[rule]]\nsyscall = "ptrace"\n'
INVALID = [
    # (file text, line or None, key path, message)
    ('syscall = "ptrace"\n', 1, "syscall", "unknown key 'syscall'"),
    ("rule = 5\n", 1, "rule", "expected [[rule]] tables, got integer"),
    ('# a comment\n[rule]\nsyscall = "ptrace"\n', 2, "rule", "expected [[rule]] tables, got table"),
    ('[[rule]]\nsyscall = "ptrace"\n[extra]\nx = 1\n', 3, "extra", "unknown key 'extra'"),
    ("rule = [5]\n", None, "rule[1]", "expected a table, got integer"),
    ('[[rule]]\nerrno = "EPERM"\n', 1, "rule[1]", 'missing key "syscall"'),
    ('[[rule]]\nsyscall = "fooo"\n', 2, "rule[1].syscall", "unknown system call 'fooo'"),
    (RULE + '\n[[rule]]\nsyscall = "fooo"\n', 5, "rule[2].syscall", "unknown system call 'fooo'"),
    ("[[rule]]\nsyscall = 5\n", 2, "rule[1].syscall", "expected a system call name, got integer"),
    ('[[rule]]\nsyscall = "../x"\n', 2, "rule[1].syscall", "unknown system call '../x'"),
    (RULE + 'action = "KILL"\n', 3, "rule[1].action", "unknown key 'action'"),
    (RULE + 'errno = "EFOO"\n', 3, "rule[1].errno", "unknown errno name 'EFOO'"),
    (RULE + 'errno = "errorcode"\n', 3, "rule[1].errno", "unknown errno name 'errorcode'"),
    (RULE + "errno = 0\n", 3, "rule[1].errno", "errno 0 is out of range 1..4095"),
    (RULE + "errno = 4096\n", 3, "rule[1].errno", "errno 4096 is out of range"),
    (RULE + "errno = true\n", 3, "rule[1].errno", "expected an errno name or number, got boolean"),
    (RULE + "why = 1\n", 3, "rule[1].why", "expected a string, got integer"),
    (RULE + "args = 5\n", 3, "rule[1].args", "expected an array of tables, got integer"),
    (RULE + "args = [5]\n", 3, "rule[1].args[1]", "expected a table, got integer"),
    (RULE + 'args = [{ op = "EQ", value = 1 }]\n', 3, "rule[1].args[1]", 'missing key "index"'),
    (RULE + 'args = [{ index = 0, op = "EQ" }]\n', 3, "rule[1].args[1]", 'missing key "value"'),
    (RULE + 'args = [{ index = 6, op = "EQ", value = 1 }]\n', 3, "rule[1].args[1].index", "index 0..5, got 6"),
    (RULE + 'args = [{ index = "0", op = "EQ", value = 1 }]\n', 3, "rule[1].args[1].index", "got '0'"),
    (RULE + 'args = [{ index = 0, op = "EQ", value = 1 }, { index = 0, op = "NE", value = 2 }]\n', 3,
     "rule[1].args[2].index", "argument 0 is compared twice"),
    (RULE + 'args = [{ index = 0, op = "BETWEEN", value = 1 }]\n', 3, "rule[1].args[1].op",
     "unknown operator 'BETWEEN'"),
    (RULE + 'args = [{ index = 0, op = "EQ", value = -1 }]\n', 3, "rule[1].args[1].value",
     "expected an integer 0..2**64-1, got -1"),
    (RULE + 'args = [{ index = 0, op = "EQ", value = 1.5 }]\n', 3, "rule[1].args[1].value", "got 1.5"),
    (RULE + 'args = [{ index = 0, op = "MASKED_EQ", value = 1 }]\n', 3, "rule[1].args[1]", 'missing key "mask"'),
    (RULE + 'args = [{ index = 0, op = "EQ", value = 1, mask = 1 }]\n', 3, "rule[1].args[1].mask",
     "mask is only for MASKED_EQ"),
    (RULE + 'args = [{ index = 0, op = "EQ", value = 1, arg = 1 }]\n', 3, "rule[1].args[1].arg",
     "unknown key 'arg'"),
]


@pytest.mark.parametrize("text, line, key, message", INVALID)
def test_rule_file_errors_name_file_line_and_key(tmp_path, text, line, key, message):
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RootsandError) as e:
        seccomp.load_rule_file(str(path))
    where = f"seccomp rules {path}, line {line}" if line else f"seccomp rules {path}"
    assert e.value.message.startswith(f"{where}: {key}: "), e.value.message
    assert message in e.value.message


def test_rule_file_unreadable_or_not_toml(tmp_path):
    with pytest.raises(RootsandError, match=r"seccomp rules /nonexistent/r.toml: cannot read it"):
        seccomp.load_rule_file("/nonexistent/r.toml")
    (tmp_path / "bad.toml").write_text("[[rule]\n")
    with pytest.raises(RootsandError, match="invalid TOML"):
        seccomp.load_rule_file(str(tmp_path / "bad.toml"))
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(RootsandError, match="not UTF-8"):
        seccomp.load_rule_file(str(tmp_path / "bin.toml"))
