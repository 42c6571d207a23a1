"""The seccomp filter: the default rules, rule files, and what the kernel does once the filter is loaded.

The probes are tests/seccomp_probes.py's table, the same one tests/integration/test_seccomp_sandbox.py runs
inside a sandbox. Here the filters are loaded in forked children (a filter cannot be removed), which report
through a pipe. These tests may run as root: every probe passes arguments that the kernel refuses (bad
pointers, bad flags, bad magic numbers) or that make a file in a temporary directory, so nothing happens
even when a call gets past the filter.
"""

import ctypes
import dataclasses
import errno
import itertools
import json
import os
import re
import subprocess
import sys
import termios
import traceback

import pytest
from hypothesis import given, strategies as st

import seccomp_probes as probes
from rootsand.errors import RootsandError
from rootsand.security.seccomp import compile as seccomp_compile, rulefile, rules as seccomp_rules, syscall_names

pyseccomp = pytest.importorskip("pyseccomp")

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWUSER = 0x10000000
TIOCLINUX = 0x541C
U64 = (1 << 64) - 1

PLAIN = ("keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module",
         "delete_module", "bpf", "perf_event_open", "userfaultfd", "open_by_handle_at", "acct", "swapon", "swapoff",
         "reboot", "io_uring_setup", "io_uring_enter", "io_uring_register")
MOUNT_API = ("open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")
USERNS = ("unshare", "clone", "clone3")
ALL_OPTIONS = {"limit_memfd": True, "shm_max": probes.SHM_MAX, "shared_map_max": probes.MAP_MAX}  # every rule on (net_mode none, setuid_bits false)
HAVE_FCHMODAT2 = seccomp_compile._kernel_has("fchmodat2")  # Linux 6.6


class NativeNumbers(dict):
    """The native number of each system call, from libseccomp (negative: this architecture lacks it)."""

    def __missing__(self, name: str) -> int:
        self[name] = number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
        return number


NUMBERS = NativeNumbers()


def with_errno(rule, number: int):
    return rule.replace(errno=number) if hasattr(rule, "replace") else dataclasses.replace(rule, errno=number)


def in_child(rules, function, cwd=None):
    """function()'s result, from a forked child in cwd after the launcher's last steps: no_new_privs, then the
    filter of `rules` (None: no filter at all, the kernel's own answers)."""
    prepared = seccomp_compile.prepare(rules) if rules is not None else None  # in the parent, as the launcher does
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            if cwd is not None:
                os.chdir(cwd)
            if prepared is not None:
                if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
                    raise OSError(ctypes.get_errno(), "prctl")
                seccomp_compile.install(prepared)
            out = {"result": function()}
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
    return out["result"]


def run_calls(rules, calls, cwd) -> dict:
    """{name: result} of each probes.Call, made in a child under a filter of `rules` (None: no filter)."""
    def make():
        runner = probes.Runner(NUMBERS)
        runner.setup(calls)
        return {call.name: runner.call(call) for call in calls}
    return in_child(rules, make, cwd)


def run_table(rules, cwd, shm_max=probes.SHM_MAX, extras=()) -> dict:
    """{name: result} of every probe and twin of the table, and of the named probes.EXTRAS."""
    return in_child(rules, lambda: probes.run_all(NUMBERS, shm_max, extras=extras), cwd)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory) -> dict:
    """The kernel's own answers to the table: no filter. Every run gets a directory of its own."""
    return run_table(None, tmp_path_factory.mktemp("kernel"), extras=("Seccomp",))


def table_calls(shm_max=probes.SHM_MAX):
    table = probes.table(shm_max)
    return table, probes.benign_calls(table)


def leftovers(directory, got, shm_max=probes.SHM_MAX) -> tuple[list, list]:
    """(files that refused probes created, files with a setuid or setgid bit) in directory."""
    refused = [c for c in probes.table(shm_max) if got[c.name] not in (0, None)]
    made = set(probes.created_files(refused)) & set(os.listdir(directory))
    bits = [name for name in os.listdir(directory) if os.stat(os.path.join(directory, name)).st_mode & 0o6000]
    return sorted(made), sorted(bits)


# ---------------------------------------------------------------------------------------------- the rule set

def by_name(rules):
    out = {}
    for rule in rules:
        out.setdefault(rule.syscall, []).append(rule)
    return out


def test_default_rules_name_every_call():
    rules = by_name(seccomp_rules.default_rules(nested_userns=False))
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
    assert all(r.why for r in seccomp_rules.default_rules(nested_userns=False))


MOUNT_API = ("open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr")


def test_user_namespace_and_mount_api_rules_only_without_nested_userns():
    """With nested user namespaces, rootsand inside builds its mounts with the new mount API."""
    nested = by_name(seccomp_rules.default_rules(nested_userns=True))
    strict = by_name(seccomp_rules.default_rules(nested_userns=False))
    assert not set(USERNS) & set(nested) and not set(MOUNT_API) & set(nested)
    assert set(strict) - set(nested) == set(USERNS) | set(MOUNT_API)


def refused_by(rules, syscall: str, args: tuple[int, ...]) -> bool:
    """What a filter of these rules does with a call, evaluated in Python (args as the kernel sees them)."""
    compare = {"EQ": lambda v, a, b: v == a, "NE": lambda v, a, b: v != a, "LT": lambda v, a, b: v < a,
               "LE": lambda v, a, b: v <= a, "GT": lambda v, a, b: v > a, "GE": lambda v, a, b: v >= a,
               "MASKED_EQ": lambda v, a, b: v & a == b}
    return any(r.syscall == syscall and all(compare[op](args[i], a, b) for i, op, a, b in r.args) for r in rules)


@given(st.integers(0, 0xFFFFFFFF))
def test_personality_refuses_exactly_the_aslr_flags_but_not_the_query(value):
    rules = seccomp_rules.default_rules(nested_userns=True)
    weakening = value & (seccomp_rules.ADDR_NO_RANDOMIZE | seccomp_rules.READ_IMPLIES_EXEC) != 0
    assert refused_by(rules, "personality", (value,)) == (weakening and value != 0xFFFFFFFF)


def test_personality_values_next_to_the_query():
    # All bits but one: where a rule for a missing bit would let a weakening value through as "the query".
    rules = seccomp_rules.default_rules(nested_userns=True)
    for bit in range(32):
        value = 0xFFFFFFFF ^ 1 << bit
        weakening = value & (seccomp_rules.ADDR_NO_RANDOMIZE | seccomp_rules.READ_IMPLIES_EXEC) != 0
        assert refused_by(rules, "personality", (value,)) == weakening, hex(value)
    assert not refused_by(rules, "personality", (0xFFFFFFFF,))


def test_default_rules_do_not_import_pyseccomp():
    # Start-up time: only prepare() and load_rule_file() may pay for pyseccomp.
    code = ("import sys; from rootsand.security.seccomp import rules; rules.default_rules(False); "
            "print('pyseccomp' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_rules_for_profile_values(tmp_path):
    assert seccomp_rules.rules_for("none", False) is None
    assert seccomp_rules.rules_for("default", True) == seccomp_rules.default_rules(True)
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nsyscall = "uname"\n')
    assert seccomp_rules.rules_for(str(path), True, file_rules=rulefile.load_rule_file(str(path))) == (
        seccomp_rules.default_rules(True) + [seccomp_rules.Rule("uname", errno.EPERM)])


# ---------------------------------------------------------------------------------------------- prepare, install

def test_prepare_builds_a_filter_for_native_and_compat_arches(tmp_path):
    prepared = seccomp_compile.prepare(seccomp_rules.default_rules(nested_userns=False))
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
        seccomp_compile.prepare([seccomp_rules.Rule("fooo", errno.EPERM)])
    two_on_one_arg = seccomp_rules.Rule("ioctl", errno.EPERM, ((1, "EQ", 1, 0), (1, "EQ", 2, 0)))
    with pytest.raises(RootsandError, match=r"ioctl\(arg1 EQ 0x1, arg1 EQ 0x2\): libseccomp refused it") as e:
        seccomp_compile.prepare([two_on_one_arg])
    assert "seccomp = \"none\"" in e.value.hint


def test_install_turns_load_errors_into_rootsand_errors():
    class Refused:
        def load(self):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))

    with pytest.raises(RootsandError, match="cannot install the seccomp filter: Invalid argument") as e:
        seccomp_compile.install(Refused())
    assert "CONFIG_SECCOMP_FILTER" in e.value.hint


def test_socket_family_rules():
    rules = by_name(seccomp_rules.default_rules(nested_userns=True))
    for call in ("socket", "socketpair"):
        assert sorted((r.errno, r.args, r.direct) for r in rules[call]) == sorted(
            (errno.EAFNOSUPPORT, ((0, "MASKED_EQ", 0xFFFFFFFF, family),), True) for family in (30, 38, 40, 41))
    slirp = by_name(seccomp_rules.default_rules(True, net_mode="slirp"))
    assert slirp["socket"] == rules["socket"] and slirp["socketpair"] == rules["socketpair"]
    host = by_name(seccomp_rules.default_rules(True, net_mode="host"))
    assert "socket" not in host and "socketpair" not in host
    some = by_name(seccomp_rules.default_rules(True, socket_families=("AF_ALG", "AF_VSOCK")))
    assert sorted(r.args[0][3] for r in some["socket"]) == sorted(r.args[0][3] for r in some["socketpair"]) == [30, 41]
    assert "socket" not in by_name(seccomp_rules.default_rules(True, socket_families=tuple(seccomp_rules.SOCKET_FAMILIES)))
    with pytest.raises(ValueError, match="AF_INET"):
        seccomp_rules.default_rules(True, socket_families=("AF_INET",))


def test_setuid_rules():
    rules = by_name(seccomp_rules.default_rules(nested_userns=True))
    expected = {"chmod": 1, "fchmod": 1, "fchmodat": 2, "fchmodat2": 2, "open": 2, "openat": 3, "creat": 1,
                "mknod": 1, "mknodat": 2}
    for call, index in expected.items():
        assert sorted((r.errno, r.args) for r in rules[call]) == [
            (errno.EPERM, ((index, "MASKED_EQ", 0o2000, 0o2000),)),
            (errno.EPERM, ((index, "MASKED_EQ", 0o4000, 0o4000),))], call
        assert all(r.optional == (call in ("chmod", "open", "creat", "mknod")) for r in rules[call])
    assert [(r.errno, r.args) for r in rules["openat2"]] == [(errno.ENOSYS, ())]
    allowed = by_name(seccomp_rules.default_rules(True, setuid_bits=True))
    assert not (set(expected) | {"openat2"}) & set(allowed)


def test_memory_rules():
    plain = by_name(seccomp_rules.default_rules(True))
    assert not {"memfd_create", "memfd_secret", "shmget", "ipc"} & set(plain)
    memfd = by_name(seccomp_rules.default_rules(True, limit_memfd=True))
    assert [(r.errno, r.args) for r in memfd["memfd_create"] + memfd["memfd_secret"]] == [(errno.ENOSYS, ())] * 2
    assert "shmget" not in memfd
    shm = by_name(seccomp_rules.default_rules(True, shm_max=1000))
    assert "memfd_create" not in shm
    assert [(r.errno, r.args, r.direct) for r in shm["shmget"]] == [(errno.EINVAL, ((1, "GT", 1000, 0),), True)]
    assert [(r.errno, r.args, r.optional) for r in shm["ipc"]] == [
        (errno.EINVAL, ((0, "MASKED_EQ", 0xFFFF, 23), (2, "GT", 1000, 0)), True)]
    mapped = by_name(seccomp_rules.default_rules(True, shared_map_max=1000))
    assert not {"memfd_create", "shmget"} & set(mapped)
    # MAP_SHARED|MAP_ANONYMOUS (0x21 on x86-64) above the limit: shared memory RLIMIT_DATA does not count
    assert [(r.syscall, r.errno, r.args, r.optional) for r in mapped["mmap"] + mapped["mmap2"]] == [
        (call, errno.ENOMEM, ((1, "GT", 1000, 0), (3, "MASKED_EQ", 0x21, 0x21)), call == "mmap2")
        for call in ("mmap", "mmap2")]
    mips = seccomp_rules.default_rules(True, shared_map_max=1000, arch=seccomp_rules.HostArch(machine="mips64"))
    assert [r.args[1] for r in mips if r.syscall == "mmap"] == [(3, "MASKED_EQ", 0x801, 0x801)]
    for bad in (-1, 1.5, True, "64M", 1 << 64):
        for name in ("shm_max", "shared_map_max"):
            with pytest.raises(ValueError, match=name):
                seccomp_rules.default_rules(True, **{name: bad})
    assert all(r.why for r in seccomp_rules.default_rules(False, **ALL_OPTIONS))


def test_rules_for_passes_the_options_on():
    options = dict(net_mode="slirp", setuid_bits=True, socket_families=["AF_ALG"], limit_memfd=True, shm_max=5,
                   shared_map_max=7)
    assert seccomp_rules.rules_for("default", False, **options) == seccomp_rules.default_rules(
        False, **{**options, "socket_families": ("AF_ALG",)})
    assert seccomp_rules.rules_for("default", True) == seccomp_rules.default_rules(True)
    assert seccomp_rules.rules_for("none", True, setuid_bits=True) is None


# ---------------------------------------------------------------------------------------------- the probe table

# Each option of default_rules that adds rules, off and on.
OPTION_SETS = [dict(zip(("nested_userns", "net_mode", "setuid_bits", "limit_memfd", "shm_max", "shared_map_max"),
                        values))
               for values in itertools.product((False, True), ("none", "host"), (False, True), (False, True),
                                               (None, probes.SHM_MAX), (None, probes.MAP_MAX))]
COMPARE = {"EQ": lambda v, a, b: v == a, "NE": lambda v, a, b: v != a, "LT": lambda v, a, b: v < a,
           "LE": lambda v, a, b: v <= a, "GT": lambda v, a, b: v > a, "GE": lambda v, a, b: v >= a,
           "MASKED_EQ": lambda v, a, b: v & a == b}


def key(rule) -> tuple:
    return rule.syscall, tuple(rule.args)


def rules_matching(rules, call) -> list:
    """The rules that match a probes.Call, evaluated in Python on its arguments as the filter sees them."""
    out = []
    for rule in rules:
        if rule.syscall != call.syscall:
            continue
        values = []
        for index, op, a, b in rule.args:
            value = call.args[index] if index < len(call.args) else 0
            assert isinstance(value, int), f"{call.name}: {rule.syscall} compares argument {index}, a {value!r}"
            values.append(COMPARE[op](value & U64, a, b))
        if all(values):
            out.append(rule)
    return out


def test_every_rule_has_a_probe_and_every_probe_its_rules():
    # Both ways, for every combination of the options that add rules: each rule is some probe's target,
    # and each probe's targets are rules (with the errno it expects).
    for options in OPTION_SETS:
        rules = seccomp_rules.default_rules(**options)
        table = probes.table(options["shm_max"] or probes.SHM_MAX, options["shared_map_max"] or probes.MAP_MAX)
        targets = {target for probe in table for target in probe.targets}
        untested = [(r.syscall, r.args, r.why) for r in rules if key(r) not in targets]
        assert untested == [], (options, untested)
    full = seccomp_rules.default_rules(False, **ALL_OPTIONS)
    errnos = {key(r): r.errno for r in full}
    assert len(errnos) == len(full)  # no two rules with the same call and arguments
    table, twins = table_calls()
    for probe in table:
        assert probe.targets, probe.name
        assert [t for t in probe.targets if t not in errnos] == [], probe.name  # a rule the filter has
        assert {errnos[t] for t in probe.targets} == {probe.errno}, probe.name
        assert all(t[0] == probe.syscall for t in probe.targets), probe.name
    # Every group of rules with one purpose (the 62 personality rules are two) has a probe.
    whys = {(r.syscall, r.why) for r in full}
    probed = {(r.syscall, r.why) for r in full if key(r) in {t for p in table for t in p.targets}}
    assert whys == probed
    assert len({p.name for p in table} | {t.name for t in twins}) == len(table) + len(twins)  # unique names


def test_each_probe_meets_exactly_its_rules_and_each_twin_none():
    # The filter's comparisons evaluated on the probes' arguments: a probe's call matches its targets (and
    # no other rule, so a refusal names the rule); the benign twin matches no rule at all.
    full = seccomp_rules.default_rules(False, **ALL_OPTIONS)
    table, twins = table_calls()
    for probe in table:
        assert sorted(key(r) for r in rules_matching(full, probe)) == sorted(probe.targets), probe.name
    for twin in twins:
        assert rules_matching(full, twin) == [], twin.name
    assert [p.name for p in table if p.benign is None] == [
        p.name for p in table if all(not args for _, args in p.targets)]  # a twin wherever the rule has arguments
    personality = [p for p in table if p.syscall == "personality"]
    assert {len(p.targets) for p in personality} == {31, 30}  # all but the flag's own bit (and bit 31 in one)


def test_builtin_numbers_are_libseccomps():
    table, twins = table_calls()
    names = probes.syscalls(table + twins)
    for machine, arch in (("x86_64", pyseccomp.Arch.X86_64), ("aarch64", pyseccomp.Arch.AARCH64)):
        resolved = {name: pyseccomp.resolve_syscall(arch, name) for name in names}
        assert probes.NUMBERS[machine] == {name: n for name, n in resolved.items() if n >= 0}, machine


def test_expected_says_what_the_filter_answers():
    table, twins = table_calls()
    kernel = {c.name: 1000 + i for i, c in enumerate(table + twins)}
    rules = seccomp_rules.default_rules(True)
    want = probes.expected(rules, kernel)
    assert want["ioctl TIOCSTI"] == errno.EPERM and want["open_tree"] == kernel["open_tree"]
    assert want["unshare CLONE_NEWUSER"] == kernel["unshare CLONE_NEWUSER"]  # nested_userns: no rule
    assert want["memfd_create"] == kernel["memfd_create"] and want["ioctl TCGETS"] == kernel["ioctl TCGETS"]
    assert probes.expected(rules, {**kernel, "open 4755": None})["open 4755"] is None  # no such call here
    # A later rule with the same call and arguments wins, as in prepare().
    later = rules + [seccomp_rules.Rule("keyctl", errno.EACCES)]
    assert probes.expected(later, kernel)["keyctl"] == errno.EACCES


# ---------------------------------------------------------------------------------------------- in the kernel

def test_each_probe_is_refused_by_its_own_rule(tmp_path, kernel):
    # Each rule with an errno of its own: a probe's answer says which rule refused it.
    full = seccomp_rules.default_rules(False, **ALL_OPTIONS)
    numbered = [with_errno(rule, 2000 + i) for i, rule in enumerate(full)]
    own = {key(rule): rule.errno for rule in numbered}
    got = run_table(numbered, tmp_path)
    table, twins = table_calls()
    # None: this architecture has no such call (open, chmod on aarch64; ipc on x86-64).
    wrong = {p.name: got[p.name] for p in table if got[p.name] not in {own[t] for t in p.targets}
             and not (got[p.name] is None and kernel[p.name] is None)}
    assert wrong == {}
    assert {t.name: got[t.name] for t in twins} == {t.name: kernel[t.name] for t in twins}
    assert leftovers(tmp_path, got) == ([], [])


FILTERS = {
    "every rule": dict(nested_userns=False, **ALL_OPTIONS),
    "default profile": dict(nested_userns=True),
    "net host, setuid bits": dict(nested_userns=True, net_mode="host", setuid_bits=True),
    "AF_VSOCK allowed": dict(nested_userns=True, net_mode="slirp", socket_families=("AF_VSOCK",)),
    "memory limit": dict(nested_userns=True, limit_memfd=True, shm_max=4096, shared_map_max=probes.MAP_MAX),
}


@pytest.mark.parametrize("name", FILTERS)
def test_the_filter_answers_each_probe(tmp_path, tmp_path_factory, name):
    # A probe whose rule is in the filter gets the rule's errno, everything else the kernel's own answer.
    options = FILTERS[name]
    shm_max = options.get("shm_max") or probes.SHM_MAX
    rules = seccomp_rules.default_rules(**options)
    kernel = run_table(None, tmp_path_factory.mktemp("kernel"), shm_max)
    got = run_table(rules, tmp_path, shm_max, extras=("getpid", "posix_spawn", "Seccomp"))
    assert {call: got[call] for call in kernel} == probes.expected(rules, kernel, shm_max)
    # posix_spawn: glibc falls back from clone3 to clone where the filter says ENOSYS.
    assert (got["getpid"], got["posix_spawn"], got["Seccomp"]) == (0, 0, "2")
    made, bits = leftovers(tmp_path, got, shm_max)
    assert made == []
    setuid_ran = [p.name for p in probes.table(shm_max) if p.syscall in ("open", "creat", "mknod", "openat",
                                                                         "mknodat") and got[p.name] == 0]
    assert bool(bits) == bool(setuid_ran) == options.get("setuid_bits", False)


def test_without_a_filter_the_kernel_answers_otherwise(kernel):
    # What the filter changes: each probe's call, unfiltered, gets another answer from the kernel than the
    # filter's, but where its kernel_may_agree says why not. A caller with every capability in the initial
    # user namespace also tells those NEEDS_CAP ones apart.
    if kernel["Seccomp"] != "0":
        pytest.skip(f"this process is under a seccomp filter already (Seccomp: {kernel['Seccomp']})")
    with open("/proc/self/status") as f:
        all_caps = int(re.search(r"CapEff:\s*(\w+)", f.read()).group(1), 16) == (1 << 41) - 1
    with open("/proc/self/uid_map") as f:
        init_ns = f.read().split() == ["0", "0", "4294967295"]
    table, _ = table_calls()
    telling = [p for p in table if not p.kernel_may_agree or (p.kernel_may_agree == probes.NEEDS_CAP
                                                               and all_caps and init_ns)]
    same = {p.name: kernel[p.name] for p in telling if kernel[p.name] == p.errno}
    assert same == {}
    assert {"ioctl TIOCSTI", "keyctl", "io_uring_enter", "open_tree", "clone3", "personality ADDR_NO_RANDOMIZE",
            "chmod 4755", "memfd_create"} <= {p.name for p in telling}


def test_new_call_unknown_to_libseccomp(tmp_path, monkeypatch):
    # An older libseccomp (before 2.5.5) without fchmodat2 on a kernel (6.6+) that has it: by number, natively.
    resolve = seccomp_compile._resolve
    monkeypatch.setattr(seccomp_compile, "_resolve",
                        lambda arch, name: -1 if name == "fchmodat2" else resolve(arch, name))
    assert "fchmodat2" in syscall_names.NAMES  # a rule file may name it
    rules = seccomp_rules.default_rules(nested_userns=True)
    sections = pfc_sections(seccomp_compile.prepare(rules), tmp_path)
    native = {"x86_64": "x86_64", "aarch64": "aarch64"}.get(os.uname().machine)
    if native and HAVE_FCHMODAT2:
        assert "(452)" in sections[native] and all("(452)" not in text for arch, text in sections.items()
                                                   if arch != native)
    table, _ = table_calls()
    suid = next(p for p in table if p.name == "fchmodat2 4755")
    got = run_calls(rules, [suid, suid.benign], tmp_path)
    if HAVE_FCHMODAT2:
        assert got == {"fchmodat2 4755": errno.EPERM, "fchmodat2 0755": 0}
    else:  # the kernel lacks the call: no rule, and the kernel says so
        assert got == {"fchmodat2 4755": errno.ENOSYS, "fchmodat2 0755": errno.ENOSYS}
    # A kernel without the call needs no rule.
    monkeypatch.setattr(seccomp_compile, "_kernel_has", lambda name: False)
    sections = pfc_sections(seccomp_compile.prepare(rules), tmp_path)
    assert all("(452)" not in text for text in sections.values())
    # Other unknown calls still fail closed; optional ones are left out.
    monkeypatch.setattr(seccomp_compile, "_resolve", lambda arch, name: -1 if name in ("clone3", "ipc")
                        else resolve(arch, name))
    with pytest.raises(RootsandError, match="seccomp rule for clone3: libseccomp does not know"):
        seccomp_compile.prepare(seccomp_rules.default_rules(nested_userns=False))
    sections = pfc_sections(seccomp_compile.prepare(seccomp_rules.default_rules(True, shm_max=5)), tmp_path)
    assert all('"ipc"' not in text for text in sections.values())


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
    sections = pfc_sections(seccomp_compile.prepare(seccomp_rules.default_rules(True, **ALL_OPTIONS)), tmp_path)
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
    sections = pfc_sections(seccomp_compile.prepare(seccomp_rules.default_rules(True, shm_max=8 << 30)), tmp_path)
    assert '"shmget"' in sections["x86_64"] and '"shmget"' not in sections["x32"]
    assert '"ipc"' not in sections["x86"]
    assert seccomp_compile._fit_32bit(((1, "GT", 8 << 30, 0),)) is None
    assert seccomp_compile._fit_32bit(((1, "LT", 8 << 30, 0), (0, "EQ", 3, 0))) == ((0, "EQ", 3, 0),)
    assert seccomp_compile._fit_32bit(((0, "MASKED_EQ", seccomp_rules.U64, 5),)) == ((0, "MASKED_EQ", 0xFFFFFFFF, 5),)
    assert seccomp_compile._fit_32bit(((0, "MASKED_EQ", seccomp_rules.U64, 1 << 40),)) is None
    assert seccomp_compile._fit_32bit(((0, "MASKED_EQ", 0xF0, 0x0F),)) is None  # no value matches, 32 bits or 64


def test_kernel_probe_for_new_calls(monkeypatch):
    release = tuple(int(n) for n in re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    if release >= (6, 6):  # fchmodat2's kernel; openat2 came in 5.6
        assert seccomp_compile._kernel_has("fchmodat2") and seccomp_compile._kernel_has("openat2")
    monkeypatch.setitem(seccomp_compile._NEW_CALLS, "nosuchcall", (1023, (0,)))  # no kernel has a call 1023 (yet)
    assert not seccomp_compile._kernel_has("nosuchcall")


def test_a_rule_file_changing_a_direct_rule_keeps_it_direct(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('[[rule]]\nsyscall = "socket"\nerrno = "EACCES"\n'
                    'args = [{ index = 0, op = "MASKED_EQ", mask = 0xFFFFFFFF, value = 40 }]\n')
    rules = seccomp_rules.rules_for(str(path), True, file_rules=rulefile.load_rule_file(str(path)))
    if os.uname().machine == "x86_64":
        sections = pfc_sections(seccomp_compile.prepare(rules), tmp_path)
        assert '"socketcall"' not in sections["x86"] and "ERRNO(13)" in sections["x86_64"]
    vsock = next(p for p in probes.table() if p.name == "socket AF_VSOCK")
    assert run_calls(rules, [vsock], tmp_path) == {"socket AF_VSOCK": errno.EACCES}


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
    assert rulefile.load_rule_file(str(path)) == [
        seccomp_rules.Rule("uname", errno.EPERM),
        seccomp_rules.Rule("getpriority", errno.EACCES, ((0, "EQ", 1, 0),), "a test"),
        seccomp_rules.Rule("keyctl", errno.EACCES),
        seccomp_rules.Rule("ioctl", errno.EPERM, ((1, "MASKED_EQ", 0xFFFFFFFF, 0x5413), (0, "GE", 3, 0))),
    ]
    (tmp_path / "empty.toml").write_text("# nothing yet\n")
    assert rulefile.load_rule_file(str(tmp_path / "empty.toml")) == []


def test_rule_file_rules_in_the_kernel(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text(VALID)
    rules = seccomp_rules.default_rules(nested_userns=True) + rulefile.load_rule_file(str(path))

    def getpriority(which):
        try:
            os.getpriority(which, 0)
            return 0
        except OSError as e:
            return e.errno

    keyctl = next(p for p in probes.table() if p.name == "keyctl")  # the file's errno replaces the default's
    calls = [probes.Call("uname", "uname", (0,)),  # refused before the kernel looks at the NULL buffer
             keyctl,
             probes.Call("TIOCGWINSZ on fd 0", "ioctl", (0, termios.TIOCGWINSZ, 0)),
             probes.Call("TIOCGWINSZ on fd 3+", "ioctl", (probes.DEVNULL, termios.TIOCGWINSZ, probes.BUF))]

    def make():
        runner = probes.Runner(NUMBERS)
        runner.setup(calls)
        return {**{call.name: runner.call(call) for call in calls},
                "PRIO_PGRP": getpriority(os.PRIO_PGRP), "PRIO_PROCESS": getpriority(os.PRIO_PROCESS)}

    got = in_child(rules, make, tmp_path)
    assert got.pop("TIOCGWINSZ on fd 0") not in (errno.EPERM, None)  # EFAULT or ENOTTY, whatever fd 0 is
    assert got == {"uname": errno.EPERM, "PRIO_PGRP": errno.EACCES, "PRIO_PROCESS": 0, "keyctl": errno.EACCES,
                   "TIOCGWINSZ on fd 3+": errno.EPERM}


RULE = '[[rule]]\nsyscall = "ptrace"\n'
INVALID = [
    # (file text, line or None, key path, message)
    ('syscall = "ptrace"\n', 1, "syscall", "unknown key 'syscall'"),
    ("rule = 5\n", 1, "rule", "expected [[rule]] tables, got integer"),
    ('# a comment\n[rule]\nsyscall = "ptrace"\n', 2, "rule", "expected [[rule]] tables, got table"),
    ('[[rule]]\nsyscall = "ptrace"\n[extra]\nx = 1\n', 3, "extra", "unknown key 'extra'"),
    ("rule = [5]\n", 1, "rule[1]", "expected a table, got integer"),
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
        rulefile.load_rule_file(str(path))
    where = f"seccomp rules {path}, line {line}" if line else f"seccomp rules {path}"
    assert e.value.message.startswith(f"{where}: {key}: "), e.value.message
    assert message in e.value.message


def test_rule_file_unreadable_or_not_toml(tmp_path):
    with pytest.raises(RootsandError, match=r"seccomp rules /nonexistent/r.toml: cannot read it"):
        rulefile.load_rule_file("/nonexistent/r.toml")
    (tmp_path / "bad.toml").write_text("[[rule]\n")
    with pytest.raises(RootsandError, match="invalid TOML"):
        rulefile.load_rule_file(str(tmp_path / "bad.toml"))
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(RootsandError, match="not UTF-8"):
        rulefile.load_rule_file(str(tmp_path / "bin.toml"))


# ---------------------------------------------------------------------------------------------- the parts

def test_the_architecture_comes_in_as_a_fact():
    # powerpc's TIOCSTI and s390's clone, whose flags are its second argument: what host.facts() reads there.
    s390 = by_name(seccomp_rules.default_rules(False, arch=seccomp_rules.HostArch(machine="s390x")))
    assert {r.args[0][0] for r in s390["clone"]} == {1} and {r.args[0][0] for r in s390["unshare"]} == {0}
    ppc = seccomp_rules.HostArch(machine="ppc64le", tiocsti=0x80017472, tioclinux=0x541C)
    ioctls = {r.args[0][3] for r in by_name(seccomp_rules.rules_for("default", True, arch=ppc))["ioctl"]}
    assert ioctls == {0x80017472, 0x541C}
    from rootsand.config import host

    here = host.arch()
    assert (here.machine, here.tiocsti) == (os.uname().machine, termios.TIOCSTI)


def test_rule_files_may_name_whatever_libseccomp_can_filter_here():
    # The static table of names is never narrower than the installed libseccomp on the filter's architectures.
    known = set()
    for arch in seccomp_compile._arches():
        for number in range(1100):
            for base in (0, 0x40000000):  # x32's numbers carry its bit
                try:
                    name = pyseccomp.resolve_syscall(arch, number + base)
                except ValueError:
                    continue
                known.add(name.decode() if isinstance(name, bytes) else name)
    assert sorted(known - syscall_names.NAMES) == []
    assert all(seccomp_compile._resolve(arch, name) == pyseccomp.resolve_syscall(arch, name)
               for arch in seccomp_compile._arches() for name in sorted(known))


def test_building_a_filter_imports_no_binding():
    code = ("import sys; from rootsand.security.seccomp import compile, rules; compile.prepare(rules.default_rules(True));"
            " print(sorted(m for m in ('pyseccomp', 'ctypes.util', 'typing') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
