"""What stays read-only inside writable binds, applied after the mounts: the home rule's guards (a home shown
by a writable bind, config/homerule.py) and the protected paths (security.protect), each pinned on the
object that was there when the sandbox was built."""

import errno
import os
import stat

from rootsand.errors import RootsandError
from rootsand.linux import libc
from rootsand.runtime.fs.primitives import open_at, split_path


class ProtectedPaths:
    """FileSystem's home guards and protected paths (build.py)."""

    def _guard_homes(self, index: int) -> None:
        """The home rule (homerule.py): each home shown by a writable bind is read-only, with every mount
        below it (a dot-entry may be a mount of its own on the host); the profile's writable exceptions are
        bound writable over it."""
        for guard in self.home_guards:
            if guard.mount != index:
                continue
            try:
                home, path = self._walk(guard.dst)
            except FileNotFoundError:
                continue
            pins = []
            try:
                if not stat.S_ISDIR(os.fstat(home).st_mode):
                    continue
                if os.path.normpath(guard.dst) != os.path.normpath(self.mounts[guard.mount].dst):
                    # below the bind's root (--bind /home): a mount point of its own, to be made read-only
                    self._pin(os.dup(home), path, read_only=False)
                    os.close(home)
                    home, path = self._walk(guard.dst)
                # Cloned before the home turns read-only (a clone keeps its source's flags), attached after
                # (a recursive read-only would reach them too); shallow ones first, deeper ones over them
                for parts in sorted((split_path(rel) for rel in guard.writable), key=len):
                    pin = self._writable_clone(home, parts, os.path.join(path, *parts))
                    if pin:
                        pins.append(pin)
                libc.mount_setattr_fd(home, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                                      recursive=True, what=path)
                while pins:
                    self._attach(*pins.pop(0))
            except OSError as e:
                raise RootsandError(f"{guard.origin or guard.dst}: the home directory {guard.dst}: "
                                    f"{libc.reason(e)}") from None
            finally:
                os.close(home)
                for tree, target, _ in pins:
                    os.close(tree)
                    os.close(target)

    def _writable_clone(self, home: int, parts: list[str], what: str) -> tuple[int, int, str] | None:
        """(a writable clone, its target, what) for the directory or file at `parts` below `home`, or None
        when it is absent or neither; no link is followed (a link stays part of the read-only top level)."""
        fd = os.dup(home)
        try:
            for part in parts:
                child = open_at(fd, part)
                os.close(fd)
                fd = child
        except OSError:
            os.close(fd)
            return None
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
            os.close(fd)
            return None
        try:
            tree = libc.open_tree(fd, "", libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE | libc.AT_EMPTY_PATH, what)
        except OSError:
            os.close(fd)
            raise
        try:
            libc.mount_setattr_fd(tree, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV, what=what)
        except OSError:
            os.close(tree)
            os.close(fd)
            raise
        return tree, fd, what

    def _protect(self) -> None:
        """security.protect: each path read-only inside its writable bind, and each directory on the way
        there a mount point of its own, which cannot be renamed or removed (`mv .git x; mkdir .git` would
        otherwise leave the protection behind). The walk follows no link: a protected path that is a link
        is an error, as the sandbox could change where it leads."""
        pinned: set[str] = set()
        for item in self.protected:
            if any(s.missing for s in self.sources.get(item.mount, [])):
                continue  # an optional bind that is not there
            top, top_path = self._walk(self.mounts[item.mount].dst)
            if not stat.S_ISDIR(os.fstat(top).st_mode):
                os.close(top)
                continue  # a file bind: nothing lies below it
            try:
                self._protect_one(top, top_path, item, pinned)
            except OSError as e:
                raise RootsandError(f"security.protect {item.entry}: {item.dst}: {libc.reason(e)}") from None

    def _protect_one(self, fd: int, path: str, item, pinned: set[str]) -> None:
        parts = split_path(item.path)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                inside = os.path.join(path, part)
                if any(inside == done for done, _ in self.protected_paths):
                    return  # read-only already, with all below it (a .git made for .git/hooks/ holds .git/config)
                try:
                    child = open_at(fd, part)
                except FileNotFoundError:
                    if not item.placeholder:
                        return  # left absent: what the run makes there is moved aside after it (launcher)
                    try:
                        if not last or item.directory:
                            os.mkdir(part, 0o755, dir_fd=fd)
                        else:
                            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                             0o644, dir_fd=fd))
                    except OSError as e:
                        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                            return  # PID 1 may do all the command may: where it cannot create, the command cannot
                        raise
                    self._pin(open_at(fd, part), inside, read_only=True)
                    self.protected_paths.append((inside, True))
                    return
                mode = os.fstat(child).st_mode
                if stat.S_ISLNK(mode):
                    os.close(child)
                    raise RootsandError(f"the protected path {inside} is a symbolic link, which the sandbox "
                                        "could point elsewhere", hint=f"replace the link, or --unprotect {item.entry}")
                if last or not stat.S_ISDIR(mode):  # a file where a directory would be (a worktree's .git)
                    self._pin(child, inside, read_only=True)
                    self.protected_paths.append((inside, False))
                    return
                if inside not in pinned:
                    self._pin(child, inside, read_only=False)
                    pinned.add(inside)
                    child = open_at(fd, part)  # the root of the mount just made
                os.close(fd)
                fd, path = child, inside
        finally:
            os.close(fd)

    def _pin(self, fd: int, what: str, read_only: bool) -> None:
        """Bind `fd` onto itself: a mount point, read-only or not (always nosuid, nodev); uses up fd."""
        attrs = libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | (libc.MOUNT_ATTR_RDONLY if read_only else 0)
        self._clone_onto(fd, fd, attrs, what)

    def _clone_onto(self, source: int, target: int, attrs: int, what: str) -> None:
        """A clone of `source` (not recursive) with `attrs`, attached onto `target`, which is used up."""
        tree = libc.open_tree(source, "", libc.OPEN_TREE_CLONE | libc.AT_EMPTY_PATH, what)
        try:
            libc.mount_setattr_fd(tree, attrs, recursive=False, what=what)
        except OSError:
            os.close(tree)
            os.close(target)
            raise
        self._attach(tree, target, what)
