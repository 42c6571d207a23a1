"""The seccomp filter inside the sandbox: tests/seccomp_probes.py's table (the one tests/unit/test_seccomp.py
runs in forked children) run by `rootsand run` in profiles that turn each group of rules on and off, and
with `seccomp = "none"`: the kernel's own answers, which show what the filter changes. A profile's rule
file adds rules.

(Not test_seccomp.py: tests/unit has one, and pytest refuses two test modules of the same name without
__init__.py files.)

The probe module is copied into the sandbox's writable current directory and run there as a script: inside,
after pivot_root, neither rootsand nor pyseccomp can be imported, so the system call numbers come from the
host's pyseccomp on the command line. The probes pass arguments the kernel refuses (bad pointers, flags,
magic numbers) or make files in that directory, so a call that gets through does no harm.
"""

import errno
import json
import os
import shutil

import pytest

import seccomp_probes as probes
from conftest import sandbox
from rootsand.security import cgroup
from rootsand.security.seccomp import rules as seccomp_rules

pyseccomp = pytest.importorskip("pyseccomp")

TABLE = probes.table()
CALLS = TABLE + probes.benign_calls(TABLE)
NUMBERS = json.dumps({name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
                      for name in probes.syscalls(CALLS)})
MEMORY = 1 << 30  # the strict profile's [limits] memory

# Profiles: (security keys, [limits] keys, options); each also runs with seccomp = "none".
PROFILES = {
    "default": ("", "", []),  # the built-in default profile (and a file extending it with seccomp = "none")
    "strict": ("nested_userns = false", 'memory = "1G"', []),  # every rule: memfd and shm need a memory limit
    "loose": ("setuid_bits = true", "", ["--net", "host"]),  # no socket-family and no setuid rules
    "vsock": ('socket_families = ["AF_VSOCK"]', "", []),
}


def memory_cgroup() -> bool:
    """True when the launcher can put the sandbox in a memory cgroup: then memfds are counted, not refused."""
    delegated = cgroup.delegated_cgroup()
    return bool(delegated and "memory" in delegated[1])


def rules_of(name: str) -> list:
    """The rules the launcher builds for one of PROFILES (launcher._plan_security)."""
    uncounted = name == "strict" and not memory_cgroup()
    return seccomp_rules.default_rules(nested_userns=name != "strict", net_mode="host" if name == "loose" else "none",
                                       setuid_bits=name == "loose",
                                       socket_families=("AF_VSOCK",) if name == "vsock" else (),
                                       limit_memfd=uncounted,
                                       shm_max=min(probes.SHM_MAX, MEMORY) if uncounted else None,
                                       shared_map_max=MEMORY if uncounted else None)


def profile(tmp_path, name: str, seccomp_none: bool = False) -> list[str]:
    """The options for one of PROFILES: its file outside every directory a sandbox can write (none for the
    default profile itself)."""
    keys, limits, opts = PROFILES[name]
    if name == "default" and not seccomp_none:
        return []
    directory = tmp_path / "profiles"
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}{'-none' if seccomp_none else ''}.toml"
    path.write_text(f'extends = "default"\n[security]\n{keys}\n' + ('seccomp = "none"\n' if seccomp_none else "")
                    + (f"[limits]\n{limits}\n" if limits else ""))
    return ["--profile", str(path), *opts]


def probe_in_sandbox(tmp_path, name: str, seccomp_none: bool = False) -> tuple[dict, object]:
    """(the table's results, the directory they ran in) from a fresh current directory."""
    work = tmp_path / f"work-{name}{'-none' if seccomp_none else ''}"
    work.mkdir()
    shutil.copy(probes.__file__, work / "seccomp_probes.py")
    r = sandbox("python3", "seccomp_probes.py", "--json", "--numbers", NUMBERS,
                opts=profile(tmp_path, name, seccomp_none), cwd=work, check_rc=0)
    assert "rootsand: error:" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    return json.loads(r.stdout), work


def filtered_and_kernel(tmp_path, name: str) -> tuple[dict, dict, object]:
    got, work = probe_in_sandbox(tmp_path, name)
    kernel, _ = probe_in_sandbox(tmp_path, name, seccomp_none=True)
    assert got["Seccomp"] == "2" and kernel["Seccomp"] == host_seccomp_mode()
    return got, kernel, work


def results(got: dict) -> dict:
    return {call.name: got[call.name] for call in CALLS}


def host_seccomp_mode() -> str:
    with open("/proc/self/status") as f:
        return f.read().split("Seccomp:")[1].split()[0]


def setuid_files(work) -> list[str]:
    return sorted(name for name in os.listdir(work) if os.stat(work / name).st_mode & 0o6000)


def refused_files(work, got) -> list[str]:
    """Files that a refused probe created all the same."""
    refused = [p for p in TABLE if got[p.name] not in (0, None)]
    return sorted(set(probes.created_files(refused)) & set(os.listdir(work)))


def test_the_strict_profile_refuses_every_probe(tmp_path):
    got, kernel, work = filtered_and_kernel(tmp_path, "strict")
    rules = rules_of("strict")
    assert results(got) == probes.expected(rules, kernel)
    targets = {(r.syscall, tuple(r.args)) for r in rules}
    refused = {p.name: p.errno for p in TABLE if set(p.targets) & targets and kernel[p.name] is not None}
    assert {name: got[name] for name in refused} == refused  # each rule's own errno, inside a real sandbox
    if not memory_cgroup():
        assert {"memfd_create", "shmget shm_max+1", "unshare CLONE_NEWUSER", "clone3"} <= set(refused)
    assert got["posix_spawn"] == got["getpid"] == 0  # glibc fell back from clone3 to clone
    # On the host's side of the current directory: nothing a refused call made, no setuid or setgid bit.
    assert refused_files(work, got) == [] and setuid_files(work) == []


def test_the_default_profile_keeps_nested_user_namespaces(tmp_path):
    got, kernel, work = filtered_and_kernel(tmp_path, "default")
    assert results(got) == probes.expected(rules_of("default"), kernel)
    assert got["unshare CLONE_NEWUSER"] == got["clone CLONE_NEWUSER"] == 0
    assert got["clone3"] == errno.EINVAL  # the kernel's answer to NULL arguments: the filter let it through
    assert got["ioctl TIOCSTI"] == got["keyctl"] == got["io_uring_setup"] == errno.EPERM
    assert got["socket AF_VSOCK"] == errno.EAFNOSUPPORT and got["chmod 4755"] == errno.EPERM
    assert got["memfd_create"] == 0  # no memory limit: nothing to protect
    assert refused_files(work, got) == [] and setuid_files(work) == []


def test_net_host_and_setuid_bits_leave_those_calls_to_the_kernel(tmp_path):
    got, kernel, work = filtered_and_kernel(tmp_path, "loose")
    assert results(got) == probes.expected(rules_of("loose"), kernel)
    left = [p.name for p in TABLE if p.syscall in ("socket", "socketpair", "chmod", "fchmod", "fchmodat",
                                                    "fchmodat2", "open", "openat", "creat", "mknod", "mknodat",
                                                    "openat2")]
    assert {name: got[name] for name in left} == {name: kernel[name] for name in left}
    assert got["ioctl TIOCSTI"] == errno.EPERM  # the rest of the filter stays
    # The call went through (above); the file is the user's own (root is the user in this map), so rootsand
    # cleared its bit once the sandbox was gone: no local user can run it as the user.
    assert setuid_files(work) == []


def test_a_profile_can_allow_one_socket_family(tmp_path):
    got, kernel, _ = filtered_and_kernel(tmp_path, "vsock")
    assert results(got) == probes.expected(rules_of("vsock"), kernel)
    assert got["socket AF_VSOCK"] == kernel["socket AF_VSOCK"]  # the kernel's answer: 0 where it has vsock
    assert got["socket AF_ALG"] == got["socket AF_KCM"] == got["socketpair AF_TIPC"] == errno.EAFNOSUPPORT


@pytest.mark.no_outer_seccomp
def test_seccomp_none_lets_each_call_through(tmp_path):
    kernel, _ = probe_in_sandbox(tmp_path, "strict", seccomp_none=True)
    # Where the kernel itself can give the filter's errno (a capability the sandbox lacks, a family the
    # kernel lacks: kernel_may_agree), the answer cannot tell; everywhere else the call reached the kernel.
    telling = [p for p in TABLE if not p.kernel_may_agree and kernel[p.name] is not None]
    assert {p.name: kernel[p.name] for p in telling if kernel[p.name] == p.errno} == {}
    assert {"keyctl", "ioctl TIOCSTI", "ioctl TIOCSTI|1<<32", "open_tree", "clone3", "io_uring_enter",
            "personality ADDR_NO_RANDOMIZE", "chmod 4755", "memfd_create"} <= {p.name for p in telling}
    assert kernel["Seccomp"] == host_seccomp_mode()


def test_rule_file_adds_to_the_default_rules(tmp_path):
    rules = tmp_path / "rules" / "getpriority.toml"
    rules.parent.mkdir()
    rules.write_text('[[rule]]\nsyscall = "getpriority"\nerrno = "EPERM"\nwhy = "a test"\n')
    (tmp_path / "profiles").mkdir()
    path = tmp_path / "profiles" / "getpriority.toml"
    path.write_text(f'extends = "default"\n[security]\nseccomp = "{rules}"\n')
    work = tmp_path / "work"
    work.mkdir()
    r = sandbox("python3", "-c", "import os; os.getpriority(os.PRIO_PROCESS, 0)", opts=["--profile", str(path)],
                cwd=work, check_rc=1)
    assert r.stderr.splitlines()[-1] == "PermissionError: [Errno 1] Operation not permitted", r.stderr
    assert "rootsand: error:" not in r.stderr
    shutil.copy(probes.__file__, work / "seccomp_probes.py")
    r = sandbox("python3", "seccomp_probes.py", "--json", "--numbers", NUMBERS, "--only", "keyctl", "socket AF_UNIX",
                "--no-extras", opts=["--profile", str(path)], cwd=work, check_rc=0)
    assert json.loads(r.stdout) == {"keyctl": errno.EPERM, "socket AF_UNIX": 0}  # the default rules still apply


def test_bad_rule_file_is_one_error_naming_file_line_and_key(tmp_path):
    (tmp_path / "profiles").mkdir()
    rules = tmp_path / "profiles" / "bad-rules.toml"
    rules.write_text('[[rule]]\nsyscall = "fooo"\n')
    path = tmp_path / "profiles" / "bad.toml"
    path.write_text(f'extends = "default"\n[security]\nseccomp = "{rules}"\n')
    work = tmp_path / "work"
    work.mkdir()
    r = sandbox("true", opts=["--profile", str(path)], cwd=work, check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: seccomp rules {rules}, line 2: rule[1].syscall: "
                               "unknown system call 'fooo'"), r.stderr
