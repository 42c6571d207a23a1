"""Thin ctypes wrappers for the system calls Python 3.11 lacks.

Every wrapper raises OSError naming the call and its path, so that a failure deep in setup can
become one readable `rootsand: error:` line.
"""

import ctypes
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

NAMESPACE_FLAGS = {
    "user": CLONE_NEWUSER,
    "mount": CLONE_NEWNS,
    "uts": CLONE_NEWUTS,
    "ipc": CLONE_NEWIPC,
    "net": CLONE_NEWNET,
    "cgroup": CLONE_NEWCGROUP,
    "pid": CLONE_NEWPID,
    "time": CLONE_NEWTIME,
}
# The names of the links under /proc/PID/ns/ for each namespace.
NAMESPACE_LINKS = {"user": "user", "mount": "mnt", "uts": "uts", "ipc": "ipc", "net": "net",
                   "cgroup": "cgroup", "pid": "pid", "time": "time"}

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REC = 0x4000
MS_SLAVE = 0x80000

MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4


def oserror(call: str, path: str | None = None) -> OSError:
    """An OSError for the errno ctypes saved, naming the call (and path) that failed."""
    err = ctypes.get_errno()
    what = f"{call}({path})" if path is not None else call
    return OSError(err, f"{what}: {os.strerror(err)}")


def _check(result: int, call: str, path: str | None = None) -> int:
    if result < 0:
        raise oserror(call, path)
    return result


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 271, "s390x": 280}
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_new_session_keyring() -> bool:
    """A fresh anonymous session keyring for this process and its children (False where unknown)."""
    number = _SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        return False
    return _libc.syscall(ctypes.c_long(number), ctypes.c_int(KEYCTL_JOIN_SESSION_KEYRING), None) >= 0


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    result = _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(result, "mount", target)


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), "umount2", target)


def pivot_root(new_root: str, put_old: str) -> None:
    """glibc exports pivot_root since 2.34; older ones have no wrapper, and guessing numbers is worse."""
    try:
        call = _libc.pivot_root
    except AttributeError:
        raise OSError(0, "pivot_root: this C library has no pivot_root (glibc 2.34 or later is needed)") from None
    _check(call(new_root.encode(), put_old.encode()), "pivot_root", new_root)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), "prctl")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))), "sethostname")


def setfsuid(uid: int) -> None:
    _libc.setfsuid(ctypes.c_uint(uid))  # returns the previous id, never an error


def setfsgid(gid: int) -> None:
    _libc.setfsgid(ctypes.c_uint(gid))


def setgroups_empty() -> None:
    _check(_libc.setgroups(ctypes.c_size_t(0), None), "setgroups")


# The mount API of Linux 5.2+ and openat2 of 5.6 (the same numbers on every architecture): mounts built
# on file descriptors, so that no path can be swapped for a link between two calls.
_SYS_OPEN_TREE, _SYS_MOVE_MOUNT, _SYS_FSOPEN, _SYS_FSCONFIG, _SYS_FSMOUNT = 428, 429, 430, 431, 432
_SYS_OPENAT2, _SYS_MOUNT_SETATTR = 437, 442
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 0x1
RESOLVE_NO_SYMLINKS = 0x04
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def mount_setattr(path: str, attr_set: int, recursive: bool = True) -> None:
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    _check(_libc.syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(AT_FDCWD), path.encode(),
                         ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr", path)


def mount_setattr_fd(fd: int, attr_set: int, recursive: bool = True, what: str | None = None) -> None:
    """mount_setattr on the mount `fd` refers to (a detached tree from open_tree or fsmount, say)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _check(_libc.syscall(ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(fd), b"",
                         ctypes.c_uint(flags), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
           "mount_setattr", what)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): `resolve` says which links may be followed (RESOLVE_NO_SYMLINKS: none at all)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(_libc.syscall(ctypes.c_long(_SYS_OPENAT2), ctypes.c_int(dirfd), path.encode(), ctypes.byref(how),
                                ctypes.c_size_t(ctypes.sizeof(how))), "openat2", path)


def open_tree(dirfd: int, path: str, flags: int, what: str | None = None) -> int:
    """A detached copy (OPEN_TREE_CLONE) of the mount tree at dirfd/path, as a file descriptor."""
    return _check(_libc.syscall(ctypes.c_long(_SYS_OPEN_TREE), ctypes.c_int(dirfd), path.encode(),
                                ctypes.c_uint(flags | os.O_CLOEXEC)), "open_tree", what or path)


def move_mount(from_fd: int, to_fd: int, what: str | None = None) -> None:
    """Attach the mount `from_fd` refers to onto the file or directory `to_fd` refers to."""
    _check(_libc.syscall(ctypes.c_long(_SYS_MOVE_MOUNT), ctypes.c_int(from_fd), b"", ctypes.c_int(to_fd), b"",
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)), "move_mount", what)


def fsopen(fstype: str) -> int:
    return _check(_libc.syscall(ctypes.c_long(_SYS_FSOPEN), fstype.encode(), ctypes.c_uint(1)), "fsopen", fstype)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _check(_libc.syscall(ctypes.c_long(_SYS_FSCONFIG), ctypes.c_int(fd), ctypes.c_uint(cmd),
                         key.encode() if key else None, value.encode() if value is not None else None,
                         ctypes.c_int(0)), "fsconfig", f"{key}={value}" if key else None)


def fsmount(fd: int, attrs: int = 0) -> int:
    return _check(_libc.syscall(ctypes.c_long(_SYS_FSMOUNT), ctypes.c_int(fd), ctypes.c_uint(1), ctypes.c_uint(attrs)),
                  "fsmount")


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets, each a 64-bit mask."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


STATX_BTIME = 0x800
AT_SYMLINK_NOFOLLOW = 0x100


def birth_time(dir_fd: int, name: str) -> float | None:
    """When dir_fd/name (not followed if a link) was created, from statx(2); None where the file system
    does not record it."""
    buffer = ctypes.create_string_buffer(256)
    if _libc.statx(ctypes.c_int(dir_fd), name.encode(), ctypes.c_int(AT_SYMLINK_NOFOLLOW),
                   ctypes.c_uint(STATX_BTIME), buffer) != 0:
        raise oserror("statx", name)
    mask = int.from_bytes(buffer.raw[0:4], sys.byteorder)
    if not mask & STATX_BTIME:
        return None
    seconds = int.from_bytes(buffer.raw[80:88], sys.byteorder, signed=True)
    nanoseconds = int.from_bytes(buffer.raw[88:92], sys.byteorder)
    return seconds + nanoseconds / 1e9
