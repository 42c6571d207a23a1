"""linux/libc.py: every C function typed and checked by the one errcheck, and every failure one OSError shape
whose filename names the call and its path (what the `rootsand: error:` lines show)."""

import ctypes
import errno
import os

import pytest

from rootsand.linux import libc


def failure(call, *args, **kwargs) -> OSError:
    with pytest.raises(OSError) as e:
        call(*args, **kwargs)
    return e.value


def test_a_failure_names_the_call_and_its_path_in_filename():
    e = failure(libc.openat2, libc.AT_FDCWD, "/nonexistent/x", os.O_RDONLY, libc.RESOLVE_NO_SYMLINKS)
    assert isinstance(e, FileNotFoundError)  # the errno's own subclass, as Python's calls raise
    assert (e.errno, e.strerror, e.filename) == (errno.ENOENT, os.strerror(errno.ENOENT), "openat2(/nonexistent/x)")
    assert libc.reason(e) == "openat2(/nonexistent/x): No such file or directory"
    e = failure(libc.setns, -1, 0)
    assert (e.errno, e.filename, libc.reason(e)) == (errno.EBADF, "setns", "setns: Bad file descriptor")
    e = failure(libc.birth_time, libc.AT_FDCWD, "/nonexistent/y")
    assert libc.reason(e) == "statx(/nonexistent/y): No such file or directory"


def test_calls_on_file_descriptors_name_what_the_caller_says_they_stand_for():
    unknown = 1 << 40  # an attribute no kernel has: refused before anything is looked at
    assert failure(libc.mount_setattr_fd, -1, unknown, what="/home/u").filename == "mount_setattr(/home/u)"
    assert failure(libc.mount_setattr_fd, -1, unknown).filename == "mount_setattr"
    assert failure(libc.open_tree, -1, "", libc.OPEN_TREE_CLONE, "/src").filename == "open_tree(/src)"
    assert failure(libc.open_tree, libc.AT_FDCWD, "/nonexistent", 0).filename == "open_tree(/nonexistent)"
    assert failure(libc.move_mount, -1, -1, "/dst").filename == "move_mount(/dst)"
    assert failure(libc.fsconfig, -1, libc.FSCONFIG_SET_STRING, "size", "16m").filename == "fsconfig(size=16m)"
    assert failure(libc.fsconfig, -1, libc.FSCONFIG_CMD_CREATE).filename == "fsconfig"


def test_reason_leaves_other_oserrors_to_their_message():
    try:
        os.mkdir("/nonexistent/z")
    except OSError as e:
        assert libc.reason(e) == "No such file or directory"  # the message names its path already


def test_every_c_function_is_typed_and_checked():
    for name in list(libc._c._makers):
        try:
            function = getattr(libc._c, name)
        except AttributeError:  # pivot_root before glibc 2.34
            assert name == "pivot_root"
            continue
        assert function.argtypes is not None and function.restype in (ctypes.c_int, ctypes.c_long), name
        assert function.errcheck is libc._check or name in ("setfsuid", "setfsgid"), name  # these never fail


def test_statx_is_read_through_its_structure(tmp_path):
    assert ctypes.sizeof(libc._Statx) == 256 and libc._Statx.btime.offset == 80
    (tmp_path / "f").write_text("")
    born = libc.birth_time(libc.AT_FDCWD, str(tmp_path / "f"))
    st = os.stat(tmp_path / "f")
    assert born is None or abs(born - st.st_mtime) < 5  # None: this file system keeps no birth time


def test_syscall_says_enosys_for_a_call_the_kernel_lacks():
    assert failure(libc.syscall, 1023, 0).errno == errno.ENOSYS
    assert failure(libc.syscall, 1023, (1 << 64) - 1).errno == errno.ENOSYS  # unsigned 64-bit words pass as longs
