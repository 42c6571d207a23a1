"""The seccomp filter inside the sandbox: each default rule refuses its call, `seccomp = "none"` lets it
through, `nested_userns` decides the user-namespace rules, and a profile's rule file adds rules.

(Not test_seccomp.py: tests/unit has one, and pytest refuses two test modules of the same name without
__init__.py files.)

One sandbox runs a probe script that tries every call and prints {probe: errno}. The probes pass arguments
the kernel refuses (bad pointers, flags, magic numbers), so a call that gets through does nothing.
"""

import errno
import json
import subprocess
import sys

import pytest

from conftest import sandbox

pyseccomp = pytest.importorskip("pyseccomp")

EPERM, ENOSYS = errno.EPERM, errno.ENOSYS

PROBE = r'''
import ctypes, json, os, sys, termios
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR = json.loads(sys.argv[1])
CLONE_NEWUSER, SIGCHLD, HIGH = 0x10000000, 17, 1 << 32

def sc(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *(ctypes.c_ulong(a & 0xFFFFFFFFFFFFFFFF) for a in args))
    return ctypes.get_errno() if r == -1 else 0

def ioctl(request):  # raw: fcntl.ioctl truncates the request to 32 bits
    fd = os.open("/dev/null", os.O_RDONLY)
    c = ctypes.c_char(b"x")
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR["ioctl"]), ctypes.c_long(fd), ctypes.c_ulong(request), ctypes.byref(c))
    os.close(fd)
    return ctypes.get_errno() if r == -1 else 0

def isolated(probe):  # in a child: a new user namespace must not change the probes after it
    pid = os.fork()
    if pid == 0:
        os._exit(probe())
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

def clone_newuser():
    flags = CLONE_NEWUSER | SIGCHLD
    args = (0, flags) if os.uname().machine.startswith("s390") else (flags, 0)
    r = sc("clone", *args, 0, 0, 0)
    if r == 0 and os.getpid() != PID:
        os._exit(0)  # the child
    if r == 0:
        os.wait()
    return r

def spawn_true():
    pid = os.posix_spawn("/usr/bin/true", ["true"], {})
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

PID = os.getpid()
PROBES = {
    "keyctl": lambda: sc("keyctl", 9999, 0, 0, 0, 0),
    "add_key": lambda: sc("add_key", 0, 0, 0, 0, 0),
    "request_key": lambda: sc("request_key", 0, 0, 0, 0),
    "kexec_load": lambda: sc("kexec_load", 0, 1000, 0, 0x80000000),
    "kexec_file_load": lambda: sc("kexec_file_load", -1, -1, 0, 0, 0x80000000),
    "init_module": lambda: sc("init_module", 0, 0, 0),
    "finit_module": lambda: sc("finit_module", -1, 0, 0),
    "delete_module": lambda: sc("delete_module", 0, 0),
    "bpf": lambda: sc("bpf", 9999, 0, 0),
    "perf_event_open": lambda: sc("perf_event_open", 0, 0, -1, -1, 0),
    "userfaultfd": lambda: sc("userfaultfd", 0x80000001),
    "open_by_handle_at": lambda: sc("open_by_handle_at", -1, 0, 0),
    "acct": lambda: sc("acct", 1),
    "swapon": lambda: sc("swapon", 1, 0),
    "swapoff": lambda: sc("swapoff", 1),
    "reboot": lambda: sc("reboot", 0, 0, 0, 0),
    "open_tree": lambda: sc("open_tree", -1, 0, 0),
    "move_mount": lambda: sc("move_mount", -1, 0, -1, 0, 0),
    "fsopen": lambda: sc("fsopen", 0, 0),
    "fsconfig": lambda: sc("fsconfig", -1, 0, 0, 0, 0),
    "fsmount": lambda: sc("fsmount", -1, 0, 0),
    "fspick": lambda: sc("fspick", -1, 0, 0),
    "mount_setattr": lambda: sc("mount_setattr", -1, 0, 0, 0, 0),
    "TIOCSTI": lambda: ioctl(termios.TIOCSTI),
    "TIOCSTI|1<<32": lambda: ioctl(termios.TIOCSTI | HIGH),
    "TIOCLINUX": lambda: ioctl(0x541C),
    "TIOCLINUX|1<<32": lambda: ioctl(0x541C | HIGH),
    "personality(ADDR_NO_RANDOMIZE)": lambda: isolated(lambda: sc("personality", 0x0040000)),
    "personality(READ_IMPLIES_EXEC)": lambda: isolated(lambda: sc("personality", 0x0400000)),
    "unshare(CLONE_NEWUSER)": lambda: isolated(lambda: sc("unshare", CLONE_NEWUSER)),
    "clone(CLONE_NEWUSER)": clone_newuser,
    "clone3": lambda: sc("clone3", 0, 0),
    "getpid": lambda: sc("getpid"),
    "personality(query)": lambda: sc("personality", 0xFFFFFFFF),
    "posix_spawn": spawn_true,
    "TCGETS": lambda: ioctl(termios.TCGETS),
    "Seccomp": lambda: open("/proc/self/status").read().split("Seccomp:")[1].split()[0],
}
print(json.dumps({name: probe() for name, probe in PROBES.items()}))
'''

SYSCALLS = ("ioctl keyctl add_key request_key kexec_load kexec_file_load init_module finit_module delete_module bpf "
            "perf_event_open userfaultfd open_by_handle_at acct swapon swapoff reboot open_tree move_mount fsopen "
            "fsconfig fsmount fspick mount_setattr personality unshare clone clone3 getpid").split()
NUMBERS = json.dumps({name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name) for name in SYSCALLS})

# The filter's answer to each probe.
REFUSED = {
    **dict.fromkeys(["keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
                     "finit_module", "delete_module", "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at",
                     "acct", "swapon", "swapoff", "reboot", "TIOCSTI", "TIOCSTI|1<<32", "TIOCLINUX",
                     "TIOCLINUX|1<<32", "personality(ADDR_NO_RANDOMIZE)", "personality(READ_IMPLIES_EXEC)"], EPERM),
    **dict.fromkeys(["open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr"], ENOSYS),
}
USERNS_REFUSED = {"unshare(CLONE_NEWUSER)": EPERM, "clone(CLONE_NEWUSER)": EPERM, "clone3": ENOSYS}
ALLOWED = {"getpid": 0, "personality(query)": 0, "posix_spawn": 0, "TCGETS": errno.ENOTTY}


@pytest.fixture
def dirs(tmp_path):
    """(profiles, work): profiles and rule files outside the sandbox's writable current directory."""
    (tmp_path / "profiles").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path / "profiles", tmp_path / "work"


def profile(directory, name, security: str) -> str:
    path = directory / f"{name}.toml"
    path.write_text(f'extends = "default"\n[security]\n{security}\n')
    return str(path)


def probe_in_sandbox(work, profile_path=None) -> dict:
    (work / "probe.py").write_text(PROBE)
    opts = ["--profile", profile_path] if profile_path else []
    r = sandbox("python3", "probe.py", NUMBERS, opts=opts, cwd=work, check_rc=0)
    return json.loads(r.stdout)


def probe_on_host(work) -> dict:
    """The kernel's own answers to this user, with no filter from rootsand."""
    (work / "probe.py").write_text(PROBE)
    r = subprocess.run([sys.executable, "probe.py", NUMBERS], cwd=work, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def host_seccomp_mode() -> str:
    with open("/proc/self/status") as f:
        return f.read().split("Seccomp:")[1].split()[0]


def test_default_filter_refuses_each_rule_without_nested_userns(dirs):
    profiles, work = dirs
    got = probe_in_sandbox(work, profile(profiles, "strict", "nested_userns = false"))
    assert {name: got[name] for name in REFUSED} == REFUSED
    assert {name: got[name] for name in USERNS_REFUSED} == USERNS_REFUSED
    assert {name: got[name] for name in ALLOWED} == ALLOWED  # posix_spawn: glibc fell back from clone3 to clone
    assert got["Seccomp"] == "2"


def test_default_profile_keeps_nested_user_namespaces(dirs):
    _, work = dirs
    got = probe_in_sandbox(work)  # the default profile: nested_userns = true
    assert {name: got[name] for name in REFUSED} == REFUSED
    assert got["unshare(CLONE_NEWUSER)"] == got["clone(CLONE_NEWUSER)"] == 0
    assert got["clone3"] == errno.EINVAL  # the kernel's answer to NULL arguments: the filter let it through
    assert got["Seccomp"] == "2"


def test_seccomp_none_lets_each_call_through(dirs):
    profiles, work = dirs
    got = probe_in_sandbox(work, profile(profiles, "none", 'seccomp = "none"\nnested_userns = true'))
    host = probe_on_host(work)
    filtered = {**REFUSED, **USERNS_REFUSED}
    # Where the kernel itself gives the filter's errno (acct and swapon: EPERM without host privileges),
    # the answer cannot tell; everywhere else the call must have reached the kernel.
    telling = [name for name in filtered if host[name] != filtered[name]]
    assert {name: got[name] for name in telling if got[name] == filtered[name]} == {}
    assert {"keyctl", "TIOCSTI", "TIOCSTI|1<<32", "open_tree", "clone3", "unshare(CLONE_NEWUSER)",
            "personality(ADDR_NO_RANDOMIZE)"} <= set(telling)
    assert got["Seccomp"] == host_seccomp_mode()


def test_rule_file_adds_to_the_default_rules(dirs):
    profiles, work = dirs
    rules = profiles.parent / "rules" / "uname.toml"
    rules.parent.mkdir()
    rules.write_text('[[rule]]\nsyscall = "uname"\nerrno = "EPERM"\nwhy = "a test"\n')
    opts = ["--profile", profile(profiles, "uname", f'seccomp = "{rules}"')]
    r = sandbox("python3", "-c", "import os; os.uname()", opts=opts, cwd=work, check_rc=1)
    assert "PermissionError" in r.stderr
    code = "import ctypes; libc = ctypes.CDLL(None, use_errno=True); print(libc.syscall(%d, 9999, 0, 0, 0, 0), " \
           "ctypes.get_errno())" % pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "keyctl")
    r = sandbox("python3", "-c", code, opts=opts, cwd=work, check_rc=0)
    assert r.stdout.split() == ["-1", str(EPERM)]  # keyctl: the default rules still apply


def test_bad_rule_file_is_one_error_naming_file_line_and_key(dirs):
    profiles, work = dirs
    rules = profiles / "bad-rules.toml"
    rules.write_text('[[rule]]\nsyscall = "fooo"\n')
    r = sandbox("true", opts=["--profile", profile(profiles, "bad", f'seccomp = "{rules}"')], cwd=work,
                check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: seccomp rules {rules}, line 2: rule[1].syscall: "
                               "unknown system call 'fooo'"), r.stderr
