"""Thin ctypes wrappers for the system calls Python 3.11 lacks.

Every C function here is declared with its argument and result types and checked by one errcheck: a failure
raises OSError(errno, strerror, filename), where filename names the call and its path, "mount(/x)", so that
a failure deep in setup can become one readable `rootsand: error:` line ("mount(/x): Operation not
permitted"; reason() says it so after a message's own subject).
"""

import ctypes
import errno
import os

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


class CallName(str):
    """The filename of an OSError raised here: the call, and the path it was about, as in "mount(/x)"."""


def reason(e: OSError) -> str:
    """What failed, for a message that has named its own subject: "mount(/x): Operation not permitted" for
    a call here, the strerror alone for any other OSError (whose filename is that subject)."""
    if isinstance(e.filename, CallName):
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


def _error(err: int, call: str, subject=None, strerror: str | None = None) -> OSError:
    return OSError(err, strerror or os.strerror(err), CallName(call if subject is None else f"{call}({subject})"))


def _check(result: int, function, arguments: tuple) -> int:
    """The errcheck of every function here: a negative result is a failure, and errno says which."""
    if result < 0:
        raise _error(ctypes.get_errno(), function.__name__, function.subject(arguments) if function.subject else None)
    return result


def _declare(name: str, argtypes: tuple, subject=None, check: bool = True):
    """The C library's `name`, typed; subject(arguments): what a failure names besides the call."""
    function = getattr(_libc, name)
    function.argtypes, function.restype, function.subject = argtypes, ctypes.c_int, subject
    if check:
        function.errcheck = _check
    return function


def _system_call(name: str, argtypes: tuple, subject=None):
    """syscall(2) typed for the call `name`, whose number is its first argument: for the calls glibc has no
    wrapper for, or only recent ones."""
    function = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_long, *argtypes, use_errno=True)(("syscall", _libc))
    function.__name__, function.errcheck, function.subject = name, _check, subject
    return function


class _Functions:
    """The typed C functions, each made on its first use: ctypes' types take ~40 us a function to make, and a
    process uses a few. After `_c.add(name, make)`, `_c.name` is make()'s function."""

    def __init__(self):
        self._makers = {}

    def add(self, name: str, make) -> None:
        self._makers[name] = make

    def __getattr__(self, name: str):
        if name not in self._makers:
            raise AttributeError(name)
        function = self._makers[name]()
        setattr(self, name, function)
        return function


_c = _Functions()


def prepare() -> None:
    """Make every typed function now: the setup process does it while the launcher runs newuidmap, so that
    PID 1 and the command inherit them instead of making them on the way to the command (~1 ms)."""
    for name in list(_c._makers):
        getattr(_c, name)


def _about(what: str | None, function, *arguments) -> int:
    """function(*arguments), for a call on file descriptors: a failure names `what`, the path behind them."""
    try:
        return function(*arguments)
    except OSError as e:
        raise _error(e.errno, function.__name__, what) from None


class _Text:
    """A char * argument: a str (as UTF-8), bytes, or None for NULL."""

    @staticmethod
    def from_param(value):
        return value.encode() if isinstance(value, str) else value


_int, _uint, _ulong, _size = ctypes.c_int, ctypes.c_uint, ctypes.c_ulong, ctypes.c_size_t

_c.add("unshare", lambda: _declare("unshare", (_int,)))
_c.add("setns", lambda: _declare("setns", (_int, _int)))
_c.add("mount", lambda: _declare("mount", (_Text, _Text, _Text, _ulong, _Text), lambda a: a[1]))
_c.add("umount2", lambda: _declare("umount2", (_Text, _int), lambda a: a[0]))
_c.add("pivot_root", lambda: _declare("pivot_root", (_Text, _Text), lambda a: a[0]))
_c.add("prctl", lambda: _declare("prctl", (_int, _ulong, _ulong, _ulong, _ulong)))
_c.add("sethostname", lambda: _declare("sethostname", (_Text, _size)))
_c.add("setgroups", lambda: _declare("setgroups", (_size, ctypes.c_void_p)))
# setfsuid and setfsgid return the previous id and never fail: no errcheck
_c.add("setfsuid", lambda: _declare("setfsuid", (_uint,), check=False))
_c.add("setfsgid", lambda: _declare("setfsgid", (_uint,), check=False))


def unshare(flags: int) -> None:
    _c.unshare(flags)


_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219, "ppc64le": 271, "s390x": 280}
KEYCTL_JOIN_SESSION_KEYRING = 1
_c.add("keyctl", lambda: _system_call("keyctl", (_int, _Text)))


def join_new_session_keyring() -> None:
    """A fresh anonymous session keyring for this process and its children (ENOSYS where the call's number
    is not known here)."""
    number = _SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        raise _error(errno.ENOSYS, "keyctl")
    _c.keyctl(number, KEYCTL_JOIN_SESSION_KEYRING, None)


def setns(fd: int, nstype: int) -> None:
    _c.setns(fd, nstype)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _c.mount(source, target, fstype, flags, data)


def umount2(target: str, flags: int = 0) -> None:
    _c.umount2(target, flags)


def pivot_root(new_root: str, put_old: str) -> None:
    """glibc exports pivot_root since 2.34; older ones have no wrapper, and guessing numbers is worse."""
    try:
        call = _c.pivot_root
    except AttributeError:
        raise _error(errno.ENOSYS, "pivot_root", strerror="this C library has no pivot_root "
                                                          "(glibc 2.34 or later is needed)") from None
    call(new_root, put_old)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _c.prctl(option, arg2, arg3, arg4, arg5)


def sethostname(name: str) -> None:
    raw = name.encode()
    _c.sethostname(raw, len(raw))


def setfsuid(uid: int) -> None:
    _c.setfsuid(uid)


def setfsgid(gid: int) -> None:
    _c.setfsgid(gid)


def setgroups_empty() -> None:
    _c.setgroups(0, None)


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


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


# A system call's arguments after its number: a[1] is the first. open_tree, move_mount and mount_setattr on
# a file descriptor name what the caller says it stands for (_about).
_c.add("mount_setattr", lambda: _system_call("mount_setattr", (_int, _Text, _uint, ctypes.POINTER(_MountAttr), _size),
                                             lambda a: a[2]))
_c.add("openat2", lambda: _system_call("openat2", (_int, _Text, ctypes.POINTER(_OpenHow), _size), lambda a: a[2]))
_c.add("open_tree", lambda: _system_call("open_tree", (_int, _Text, _uint)))
_c.add("move_mount", lambda: _system_call("move_mount", (_int, _Text, _int, _Text, _uint)))
_c.add("fsopen", lambda: _system_call("fsopen", (_Text, _uint), lambda a: a[1]))
_c.add("fsconfig", lambda: _system_call("fsconfig", (_int, _uint, _Text, _Text, _int),
                                        lambda a: f"{a[3]}={a[4]}" if a[3] else None))
_c.add("fsmount", lambda: _system_call("fsmount", (_int, _uint, _uint)))


def mount_setattr(path: str, attr_set: int, recursive: bool = True) -> None:
    attr = _MountAttr(attr_set, 0, 0, 0)
    _c.mount_setattr(_SYS_MOUNT_SETATTR, AT_FDCWD, path, AT_RECURSIVE if recursive else 0, attr, ctypes.sizeof(attr))


def mount_setattr_fd(fd: int, attr_set: int, recursive: bool = True, what: str | None = None) -> None:
    """mount_setattr on the mount `fd` refers to (a detached tree from open_tree or fsmount, say)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
    _about(what, _c.mount_setattr, _SYS_MOUNT_SETATTR, fd, "", flags, attr, ctypes.sizeof(attr))


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2): `resolve` says which links may be followed (RESOLVE_NO_SYMLINKS: none at all)."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _c.openat2(_SYS_OPENAT2, dirfd, path, how, ctypes.sizeof(how))


def open_tree(dirfd: int, path: str, flags: int, what: str | None = None) -> int:
    """A detached copy (OPEN_TREE_CLONE) of the mount tree at dirfd/path, as a file descriptor."""
    return _about(what or path, _c.open_tree, _SYS_OPEN_TREE, dirfd, path, flags | os.O_CLOEXEC)


def move_mount(from_fd: int, to_fd: int, what: str | None = None) -> None:
    """Attach the mount `from_fd` refers to onto the file or directory `to_fd` refers to."""
    flags = MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH
    _about(what, _c.move_mount, _SYS_MOVE_MOUNT, from_fd, "", to_fd, "", flags)


def fsopen(fstype: str) -> int:
    return _c.fsopen(_SYS_FSOPEN, fstype, 1)


def fsconfig(fd: int, cmd: int, key: str | None = None, value: str | None = None) -> None:
    _c.fsconfig(_SYS_FSCONFIG, fd, cmd, key or None, value, 0)


def fsmount(fd: int, attrs: int = 0) -> int:
    return _c.fsmount(_SYS_FSMOUNT, fd, 1, attrs)


_c.add("syscall", lambda: _system_call("syscall", (ctypes.c_long,) * 6))


# The same number on every architecture (the generic table, Linux 5.13+); with its VERSION flag it answers
# the kernel's ABI.
SYS_LANDLOCK_CREATE_RULESET = 444


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (too old, not among the LSMs booted, or an outer
    seccomp filter refusing the call)."""
    try:
        return syscall(SYS_LANDLOCK_CREATE_RULESET, 0, 0, 1)
    except OSError:
        return 0


def syscall(number: int, *args: int) -> int:
    """System call `number` with up to six integer arguments (what the kernel does not read is 0): for
    probes of whether the kernel has a call at all."""
    words = [a - (1 << 64) if a >= 1 << 63 else a for a in args]  # unsigned 64-bit values as C longs
    return _c.syscall(number, *words, *[0] * (6 - len(words)))


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_c.add("capset", lambda: _declare("capset", (ctypes.POINTER(_CapHeader), ctypes.POINTER(_CapData))))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets, each a 64-bit mask."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _c.capset(header, data)


STATX_BTIME = 0x800
AT_SYMLINK_NOFOLLOW = 0x100


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("_reserved", ctypes.c_int32)]


class _Statx(ctypes.Structure):
    """struct statx (linux/stat.h), 256 bytes; the fields after the timestamps are not read here."""

    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("attributes", ctypes.c_uint64),
                ("nlink", ctypes.c_uint32), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
                ("mode", ctypes.c_uint16), ("_spare0", ctypes.c_uint16), ("ino", ctypes.c_uint64),
                ("size", ctypes.c_uint64), ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64),
                ("atime", _StatxTimestamp), ("btime", _StatxTimestamp), ("ctime", _StatxTimestamp),
                ("mtime", _StatxTimestamp), ("_rest", ctypes.c_uint8 * 128)]


_c.add("statx", lambda: _declare("statx", (_int, _Text, _int, _uint, ctypes.POINTER(_Statx)), lambda a: a[1]))


def birth_time(dir_fd: int, name: str) -> float | None:
    """When dir_fd/name (not followed if a link) was created, from statx(2); None where the file system
    does not record it."""
    buffer = _Statx()
    _c.statx(dir_fd, name, AT_SYMLINK_NOFOLLOW, STATX_BTIME, buffer)
    if not buffer.mask & STATX_BTIME:
        return None
    return buffer.btime.tv_sec + buffer.btime.tv_nsec / 1e9
