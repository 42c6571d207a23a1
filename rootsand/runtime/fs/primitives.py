"""What every step of the file-system build uses: host sources opened without following links, detached
clones of them, new file systems with their attributes, paths split and opened one component at a time."""

import errno
import os
import stat

from rootsand.config.model import BIND_TYPES
from rootsand.errors import RootsandError
from rootsand.guard import hostpaths
from rootsand.linux import libc

STAGING = "/tmp"
ROOT = f"{STAGING}/root"
ATTRS = {"ro": libc.MOUNT_ATTR_RDONLY, "nosuid": libc.MOUNT_ATTR_NOSUID, "nodev": libc.MOUNT_ATTR_NODEV,
         "noexec": libc.MOUNT_ATTR_NOEXEC}
READ_ONLY = libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | libc.MOUNT_ATTR_NOEXEC
MAX_LINKS = 40


def attrs_of(flags, leave_out: str = "") -> int:
    """The MOUNT_ATTR_* bits of a step's flags (plan.MOUNT_FLAGS), but for the one named in leave_out."""
    bits = 0
    for flag in flags:
        if flag != leave_out:
            bits |= ATTRS[flag]
    return bits


def missing_source(what: str, path: str) -> RootsandError:
    """The error for a mount's host path that is not there (and the mount not optional)."""
    return RootsandError(f"{what}: {path} does not exist", hint="create it" + (
        ", or mark the mount optional = true" if what.startswith("profile") else ""))


class Source:
    """A host path opened (O_PATH, no link followed) before anything is covered; /proc/self/fd/N from then on."""

    def __init__(self, path: str, what: str, optional: bool = False):
        self.path = path
        self.fd: int | None = None
        try:
            self.fd = hostpaths.open_nofollow(path, os.O_PATH)
        except FileNotFoundError:
            if not optional:
                raise missing_source(what, path) from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise RootsandError(f"{what}: {path} turned into a symbolic link while the sandbox was being set "
                                    "up: not followed", hint="another sandbox may be changing that directory") from None
            raise RootsandError(f"{what}: cannot open {path}: {os.strerror(e.errno)}") from None

    @property
    def missing(self) -> bool:
        return self.fd is None

    @property
    def ref(self) -> str:
        return f"/proc/self/fd/{self.fd}"

    def is_dir(self) -> bool:
        return stat.S_ISDIR(os.stat(self.ref).st_mode)

    def clone(self, attrs: int) -> int:
        """A detached copy of the mount tree at this source, with `attrs` set on all of it before it is attached."""
        tree = libc.open_tree(self.fd, "", libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE | libc.AT_EMPTY_PATH, self.path)
        try:
            libc.mount_setattr_fd(tree, attrs, what=self.path)
        except OSError:
            os.close(tree)
            raise
        return tree


def new_fs(fstype: str, options: dict[str, str | bool], attrs: int) -> int:
    """A new, detached file system mount (fsopen/fsconfig/fsmount); `True` values are flags."""
    fd = libc.fsopen(fstype)
    try:
        for key, value in options.items():
            if value is True:
                libc.fsconfig(fd, libc.FSCONFIG_SET_FLAG, key)
            else:
                libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, key, value)
        libc.fsconfig(fd, libc.FSCONFIG_CMD_CREATE)
        return libc.fsmount(fd, attrs)
    finally:
        os.close(fd)


def open_at(dir_fd: int, name: str) -> int:
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def split_path(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def origin_of(m, index: int) -> str:
    """Who asked for a mount: the profile's file and line, or the command-line option."""
    return m.origin or f"mount {index + 1} ({m.type} on {m.dst})"


def make_dirs(path: str, what: str, mode: int) -> int:
    """mkdir -p that follows no link (the launcher resolved the path; a link now was planted since): an fd."""
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in split_path(path):
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            parent, fd = fd, os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(parent)
        return fd
    except OSError as e:
        os.close(fd)
        why = "a symbolic link is in the way" if e.errno in (errno.ELOOP, errno.ENOTDIR) else e.strerror
        raise RootsandError(f"{what}: cannot create {path}: {why}") from None
