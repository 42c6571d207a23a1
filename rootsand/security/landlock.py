"""Landlock through its three system calls (ctypes): the plan's ruleset (security/landlockrules.py) put in
place, best effort by ABI: what this kernel lacks is left out (landlockrules.unsupported() says what, for -v
and doctor).

prepare() builds the ruleset while the command process is still root inside with every capability (each path
opened O_PATH in the sandbox's final root; one that is absent is skipped); restrict() then applies it, after
no_new_privs, just before seccomp.
"""

import ctypes
import errno
import fcntl
import os
import stat

from rootsand.errors import RootsandError
from rootsand.linux import libc
from rootsand.security.landlockrules import FILE_RIGHTS, FS_RIGHTS, SCOPES

# The same numbers on every architecture (the generic table, Linux 5.13+).
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = libc.SYS_LANDLOCK_CREATE_RULESET, 445, 446
_RULE_PATH_BENEATH = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# The size the kernel is told: ABI 1-3 know only handled_access_fs, 4-5 the net field too, 6+ scoped.
_ATTR_SIZE = {1: 8, 4: 16, 6: 24}


def _bits(names, table: dict, version: int) -> int:
    mask = 0
    for name in names:
        bit, since = table[name]
        if since <= version:
            mask |= bit
    return mask


def prepare(ruleset, linked: list | None = None) -> int | None:
    """A ruleset file descriptor for `ruleset` on this kernel, or None when there is nothing it can enforce.
    The rules' paths are taken in the sandbox as it is now (its final root), following no link: `exec` takes
    them while the sandbox runs, and a command that moved a directory holding a mount point and left a link to
    / in its place must not carry that mount's rights there. A path reached through a link gets no rights (it
    is added to `linked`)."""
    if ruleset.mode == "off":
        return None
    version = libc.landlock_abi()
    handled = _bits(ruleset.handled, FS_RIGHTS, version) if version >= 2 else 0
    scoped = _bits(ruleset.scopes, SCOPES, version)
    if not handled and not scoped:
        return None
    attr = _RulesetAttr(handled, 0, scoped)
    size = _ATTR_SIZE[max(v for v in _ATTR_SIZE if v <= version)]
    fd = libc.syscall(_SYS_CREATE_RULESET, ctypes.addressof(attr), size, 0)
    if not handled:
        return fd
    file_mask = _bits(FILE_RIGHTS, FS_RIGHTS, version)
    try:
        for rule in ruleset.rules:
            try:
                path_fd = _open_no_links(rule.path)
            except OSError as e:
                if e.errno == errno.ELOOP and linked is not None:
                    linked.append(rule.path)
                if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES, errno.ELOOP):
                    continue  # absent here (an optional mount): nothing to grant
                raise
            try:
                allowed = _bits(rule.access, FS_RIGHTS, version) & handled
                _add(fd, path_fd, allowed if stat.S_ISDIR(os.fstat(path_fd).st_mode) else allowed & file_mask,
                     f"{','.join(rule.access)} beneath {rule.path}")
            finally:
                os.close(path_fd)
        _stdio_rules(fd, handled & file_mask)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_no_links(path: str) -> int:
    """`path` opened O_PATH one component at a time, none of them a link (ELOOP); not openat2's
    RESOLVE_NO_SYMLINKS, which the seccomp filter of a sandbox around this one answers ENOSYS."""
    fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        for part in [p for p in path.split("/") if p]:
            nxt = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _add(ruleset_fd: int, path_fd: int, allowed: int, what: str) -> None:
    beneath = _PathBeneath(allowed, path_fd)
    try:
        libc.syscall(_SYS_ADD_RULE, ruleset_fd, _RULE_PATH_BENEATH, ctypes.addressof(beneath), 0)
    except OSError as e:
        raise RootsandError(f"landlock: cannot grant {what}: {e.strerror}") from None


def _stdio_rules(ruleset_fd: int, file_mask: int) -> None:
    """What the caller handed over as stdin, stdout and stderr (`< input`, `> log`, the host's /dev/null, a
    named pipe) may be opened again as /dev/stdin, /dev/stdout, /dev/stderr, as it was handed over: for
    reading, for writing. An anonymous pipe or a socket needs no rule (Landlock does not judge them)."""
    read, write = FS_RIGHTS["read_file"][0], FS_RIGHTS["write_file"][0] | FS_RIGHTS["truncate"][0]
    for std in (0, 1, 2):
        try:
            kind = stat.S_IFMT(os.fstat(std).st_mode)
            mode = fcntl.fcntl(std, fcntl.F_GETFL) & os.O_ACCMODE
        except OSError:
            continue  # closed
        if kind not in (stat.S_IFREG, stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO):
            continue
        allowed = (read if mode in (os.O_RDONLY, os.O_RDWR) else 0) | (write if mode in (os.O_WRONLY, os.O_RDWR) else 0)
        try:
            _add(ruleset_fd, std, allowed & file_mask, f"access to file descriptor {std}")
        except RootsandError:
            if kind != stat.S_IFIFO:
                raise  # an anonymous pipe is refused a rule (EBADFD), and needs none


def restrict(fd: int | None) -> None:
    """Put the prepared ruleset on this process (and what it executes); needs no_new_privs set."""
    if fd is None:
        return
    try:
        libc.syscall(_SYS_RESTRICT_SELF, fd, 0)
    except OSError as e:  # E2BIG: 16 sandboxes deep, Landlock's most
        raise RootsandError(f"landlock: cannot restrict the command: {e.strerror}",
                            hint="--landlock off, or fewer sandboxes nested") from None
    finally:
        os.close(fd)
