"""The seccomp policy rules in a real sandbox, as the programs a user runs meet them: rarely used socket
families, setuid and setgid bits (coreutils' chmod and install, Python's os.open), and memory that RLIMIT_AS
does not count (memfd, SysV shared memory) when no memory cgroup counts it. Each rule's own probe, and the
profiles that turn rules off (--net host, socket_families, setuid_bits), are in test_seccomp_sandbox.py,
which runs the shared probe table (tests/seccomp_probes.py).

Each case runs `rootsand run` as the unprivileged user with the test's tmp_path as the current directory,
which the default and fakeroot profiles bind read-write: what a refused chmod leaves behind is checked on
the host's side. (Not test_seccomp_*.py in tests/unit: pytest refuses two test modules of one name.)
"""

import errno
import os
import stat

import pytest

from conftest import assert_command_failed, command_stderr, sandbox

from rootsand.security import cgroup


def memory_cgroup() -> bool:
    """True when the launcher can put the sandbox in a memory cgroup: then memfds are counted, not refused."""
    delegated = cgroup.delegated_cgroup()
    return bool(delegated and "memory" in delegated[1])


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def work(tmp_path):
    """The sandbox's current directory (tmp_path/work, holding f of mode 0644) and, beside it, a place for
    profiles that the sandbox cannot write."""
    (tmp_path / "work").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "work" / "f").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "work" / "f").chmod(0o644)
    return tmp_path / "work"


def own_profile(work, name: str, security_keys: str) -> str:
    path = work.parent / "profiles" / f"{name}.toml"
    path.write_text(f'extends = "default"\n[security]\n{security_keys}\n')
    return str(path)


# ---------------------------------------------------------------------------------------------- socket families

@pytest.mark.parametrize("family", [40, 38], ids=["AF_VSOCK", "AF_ALG"])
def test_rare_socket_family_is_refused_in_the_default_profile(work, family):
    code = f"import socket; socket.socket({family}, socket.SOCK_STREAM if {family} == 40 else socket.SOCK_SEQPACKET)"
    r = sandbox("python3", "-c", code, cwd=work, check_rc=1)
    assert command_stderr(r)[-1] == f"OSError: [Errno {errno.EAFNOSUPPORT}] Address family not supported by protocol"
    r = sandbox("python3", "-c", "import socket; socket.socket(socket.AF_UNIX).close(); "
                "socket.socket(socket.AF_INET).close(); print('ordinary families work')", cwd=work, check_rc=0)
    assert (r.stdout, r.stderr) == ("ordinary families work\n", "")


def test_unknown_socket_family_in_a_profile_is_an_error(work):
    path = own_profile(work, "bad", 'socket_families = ["AF_INET"]')
    r = sandbox("true", opts=["--profile", path], cwd=work, check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: profile {path}, line 3: security.socket_families: "
                               "unknown socket family 'AF_INET'"), r.stderr


# ---------------------------------------------------------------------------------------------- setuid bits

def test_chmod_setuid_is_refused_and_the_host_file_keeps_its_mode(work):
    r = sandbox("chmod", "4755", "f", cwd=work)
    assert_command_failed(r, 1, "chmod: changing permissions of 'f': Operation not permitted")
    assert mode(work / "f") == 0o644
    r = sandbox("chmod", "u+s,g+s", "f", cwd=work)
    assert_command_failed(r, 1, "chmod: changing permissions of 'f': Operation not permitted")
    assert mode(work / "f") == 0o644


def test_chmod_without_setuid_bits_works(work):
    r = sandbox("sh", "-c", "chmod 755 f && chmod +t f && stat -c %a f && chmod -t f", cwd=work, check_rc=0)
    assert r.stdout == "1755\n" and r.stderr == ""  # the sticky bit is no setuid bit
    assert mode(work / "f") == 0o755


def test_setgid_directory_is_refused_too(work):
    # Seccomp cannot tell directories from files: `chmod g+s dir` is refused (a documented trade-off).
    (work / "d").mkdir(mode=0o755)
    r = sandbox("chmod", "g+s", "d", cwd=work)
    assert_command_failed(r, 1, "chmod: changing permissions of 'd': Operation not permitted")
    assert mode(work / "d") == 0o755


def test_install_setuid_is_refused(work):
    r = sandbox("install", "-m", "4755", "f", "g", cwd=work)
    assert_command_failed(r, 1, "install: cannot change permissions of 'g': Operation not permitted")
    assert not (work / "g").exists() or not mode(work / "g") & (stat.S_ISUID | stat.S_ISGID)
    r = sandbox("install", "-m", "755", "f", "h", cwd=work, check_rc=0)
    assert r.stderr == "" and mode(work / "h") == 0o755


def test_open_creating_a_setuid_file_is_refused_and_leaves_no_file(work):
    code = "import os; os.open('x', os.O_CREAT | os.O_WRONLY, 0o4755)"
    r = sandbox("python3", "-c", code, cwd=work, check_rc=1)
    assert command_stderr(r)[-1] == "PermissionError: [Errno 1] Operation not permitted: 'x'", r.stderr
    assert not (work / "x").exists()
    r = sandbox("python3", "-c", "import os; os.close(os.open('y', os.O_CREAT | os.O_WRONLY, 0o644)); print('made')",
                cwd=work, check_rc=0)
    assert r.stdout == "made\n" and (work / "y").exists()


def test_fakeroot_allows_setuid_bits(work):
    r = sandbox("sh", "-c", "mkdir -p sub && cp f sub/g && chmod 4755 sub/g && stat -c %a sub/g",
                opts=["--profile", "fakeroot"], cwd=work, check_rc=0)
    assert r.stdout == "4755\n", r.stderr
    # The host sees the bit on the file root made below the top (a subordinate id's: fakeroot.toml says to keep
    # such trees private); one on the user's own file would be cleared at exit (test_packages.py).
    assert mode(work / "sub" / "g") == 0o4755


# ---------------------------------------------------------------------------------------------- memory

MEMFD_FILL = r'''
import os, sys
written = 0
chunk = b"x" * (1 << 20)
try:
    for i in range(4):
        fd = os.memfd_create(f"fill{i}")
        for _ in range(900):
            os.write(fd, chunk)
            written += 1
except OSError as e:
    print(f"stopped after {written} MiB: {e}")
    sys.exit(1)
print(f"wrote {written} MiB")
'''

SHMGET = r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
libc.shmget.argtypes = [ctypes.c_int, ctypes.c_size_t, ctypes.c_int]
ctypes.set_errno(0)
big = libc.shmget(0, 200 << 20, 0o1600)
big_errno = ctypes.get_errno()
small = libc.shmget(0, 1 << 20, 0o1600)
print(big, os.strerror(big_errno) if big == -1 else "created", "small", "created" if small >= 0 else "refused")
'''


def test_untrusted_refuses_memfd_create(work):
    code = 'import os; os.memfd_create("x"); print("memfd made")'
    r = sandbox("python3", "-c", code, opts=["--profile", "untrusted"], cwd=work)
    if memory_cgroup():  # the cgroup counts memfds: nothing to refuse
        assert (r.returncode, r.stdout) == (0, "memfd made\n"), r.stderr
    else:
        assert r.returncode == 1 and r.stdout == "", (r.returncode, r.stdout)
        assert command_stderr(r)[-1] == f"OSError: [Errno {errno.ENOSYS}] Function not implemented", r.stderr


def test_untrusted_cannot_fill_memory_with_memfds(work):
    r = sandbox("python3", "-c", MEMFD_FILL, opts=["--profile", "untrusted"], cwd=work, timeout=120)
    if memory_cgroup():  # counted: the 1G memory.max stops it, by an error (1) or the OOM killer (128 + 9)
        assert r.returncode in (1, 137) and "wrote 3600 MiB" not in r.stdout, (r.returncode, r.stdout, r.stderr)
        assert "rootsand: error:" not in r.stderr, r.stderr
    else:
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert r.stdout == "stopped after 0 MiB: [Errno 38] Function not implemented\n", r.stdout


def test_untrusted_refuses_large_sysv_segments(work):
    r = sandbox("python3", "-c", SHMGET, opts=["--profile", "untrusted"], cwd=work, check_rc=0)
    if memory_cgroup():  # the cgroup counts segments: nothing to refuse
        assert r.stdout.split()[1:] == ["created", "small", "created"], (r.stdout, r.stderr)
    else:  # EINVAL, what the kernel says above kernel.shmmax (which the sandbox's IPC namespace sets too)
        assert r.stdout == "-1 Invalid argument small created\n", (r.stdout, r.stderr)


def test_default_profile_has_memfd_and_large_segments(work):
    # No memory limit: nothing to protect, memfd_create works (and glib, Wayland, ... keep using it).
    code = 'import os; fd = os.memfd_create("x"); os.write(fd, b"y" * 4096); print("memfd", os.fstat(fd).st_size)'
    r = sandbox("python3", "-c", code, cwd=work, check_rc=0)
    assert r.stdout == "memfd 4096\n" and r.stderr == ""
    r = sandbox("python3", "-c", SHMGET, cwd=work, check_rc=0)
    assert r.stdout.split()[1:] == ["created", "small", "created"] and r.stdout.split()[0].isdigit(), r.stdout
