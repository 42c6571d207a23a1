"""The sandbox's file system: an empty tmpfs root, the profile's mounts in order, pivot_root, read-only last.

Runs in PID 1, in the sandbox's own mount namespace, after the ids are mapped. The order is bubblewrap's,
and every mount is built on file descriptors, never on paths a second sandbox could swap for a link:

  1. every mount below / becomes a slave, so nothing done here reaches the host;
  2. every host path the mounts need is opened without following any link (the launcher resolved and
     checked them: runtime/hostprep.py, guard/hostpaths.py), and each bind source is cloned at once into a detached tree whose
     read-only, nosuid and nodev flags are set before it is attached anywhere;
  3. only then a staging tmpfs covers /tmp (in this namespace only) and holds the new root, itself a
     tmpfs, beside the upper layers of throw-away overlays and generated files: since every clone was
     taken before, no bind can carry the staging area into the sandbox;
  4. each mount op is applied onto a target opened inside the new root component by component, links
     resolved as if the new root were / (so nothing leads out of it);
  5. the directories made on the way to the working directory in a tmpfs (or a throw-away overlay) turn
     read-only: a write there would vanish at exit (dpkg-buildpackage's ../*.deb);
  6. pivot_root into the new root, the old one detached, and the root tmpfs made read-only.
"""

import errno
import os
import stat

from rootsand.errors import RootsandError
from rootsand.guard import hostpaths
from rootsand.linux import libc
from rootsand.runtime.fs.hide import HiddenFiles
from rootsand.runtime.fs.overlay import OverlayMounts
from rootsand.runtime.fs.primitives import (BIND_TYPES, MAX_LINKS, ROOT, STAGING, Source, open_at, origin_of, split_path,
                                            attrs_of, new_fs)
from rootsand.runtime.fs.protect import ProtectedPaths
from rootsand.runtime.fs.special import SpecialMounts

# hostprep.hide_runtime_dirs: a tmpfs of the sandbox's own over a runtime directory of rootsand's on the host,
# mounted after the protected paths (which keep such a directory read-only where a writable bind shows it)
OWN_RUNTIME_DIR = "own-runtime-dir"


class FileSystem(SpecialMounts, OverlayMounts, ProtectedPaths, HiddenFiles):
    """Builds the sandbox's root from a plan's mount steps (plan.MountStep), then pivots into it. The steps
    of each kind live in their own module: special.py (proc, dev, mqueue), overlay.py, protect.py (the home
    guards and protected paths); this one opens the sources, walks targets, binds and pivots."""

    def __init__(self, mounts: list, rootfs: str | None, run_ids: tuple[int, int],
                 generated: dict[str, str] | None = None, sysctls: dict[str, str] | None = None,
                 protected: list | None = None, home_guards: list | None = None, workdir: str = "/",
                 hidden: list | None = None):
        self.mounts = mounts
        self.workdir = workdir  # where the command starts: the directories made on the way turn read-only
        # the directories setup made (st_dev, st_ino): not what a mount put over one of them since
        self.made_dirs: set[tuple[int, int]] = set()
        self.home_guards = home_guards or []  # homerule.HomeGuard: applied after every mount, before protect
        self.protected = protected or []  # plan.Protected: made read-only after every mount
        self.protected_paths: list[tuple[str, bool]] = []  # (inside, made): what protect() did, for --verbose
        self.hidden = hidden or []  # plan.Hidden: files read as empty, after the protected paths
        self.hidden_paths: dict[str, None] = {}  # what _hide() covered, in order, for --verbose
        self.rootfs = rootfs
        self.host_backed: list[str] = []  # paths inside where writes reach the user's files
        self.read_only_at_end: list[tuple[int, int]] = []  # (fd, attrs): once later mounts have their mount points
        self.run_ids = run_ids
        self.generated = generated or {}  # /etc files written by rootsand: hostname, hosts, resolv.conf
        # Written through the sandbox's own procfs before /proc/sys turns read-only; those that fail are
        # listed in sysctl_failures (the seccomp rules are the wall, these a second one).
        self.sysctls = sysctls or {}
        self.sysctl_failures: list[str] = []
        self.notes: list[str] = []  # what could not be done as planned, for --verbose
        self.warnings: list[str] = []  # ... and what the user must be told in any case
        self.sources: dict[int, list[Source]] = {}
        self.trees: dict[int, list[int]] = {}  # detached clones, taken before the staging area exists
        self.rootfs_tree: int | None = None
        self.root_fd: int | None = None
        self._overlays = 0

    def build(self) -> None:
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_SLAVE)
        self._open_sources()
        staging = new_fs("tmpfs", {"mode": "0700"}, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV)
        self._attach(staging, os.open(STAGING, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), STAGING)
        os.mkdir(ROOT, 0o755)
        if self.rootfs_tree is not None:
            root = self.rootfs_tree
            self.host_backed.append("/")
        else:
            # Only mount points and `file` ops live here, and it is read-only in the end.
            root = new_fs("tmpfs", {"mode": "0755", "size": "16m"}, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV)
        self._attach(root, os.open(ROOT, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), "/")
        self.root_fd = os.open(ROOT, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.root_covered = False  # a mount on / itself (bwrap's --bind / /): the root is that, as mounted
        for index, m in enumerate(self.mounts):
            sources = self.sources.get(index, [])
            if m.kind in ("absent", OWN_RUNTIME_DIR) or any(s.missing for s in sources):
                continue  # optional and absent (when the plan was resolved, or since); or mounted last
            try:
                self.BUILDERS[m.type](self, m, sources, self.trees.get(index, []))
            except OSError as e:
                raise RootsandError(f"{origin_of(m, index)}: {libc.reason(e)}") from None
            except RootsandError as e:
                raise RootsandError(f"{origin_of(m, index)}: {e.message}", e.hint) from None
            self._guard_homes(index)  # before later mounts: they stay as they are (the build's caches)
            if not split_path(m.dst) and m.type not in ("dir", "chmod", "remount-ro"):
                os.close(self.root_fd)  # what the walks start from from now on: the mount on top
                self.root_fd = os.open(ROOT, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                self.root_covered = True
        if self.sysctls and not any(m.type == "proc" for m in self.mounts):
            proc = os.open("/proc", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)  # ours: this user namespace's
            try:
                self._write_sysctls(proc)
            finally:
                os.close(proc)
        self._protect()
        self._hide()
        for index, m in enumerate(self.mounts):  # over whatever the protections made of those places
            if m.kind == OWN_RUNTIME_DIR:
                try:
                    self._tmpfs(m, [], [])
                except OSError as e:
                    raise RootsandError(f"{origin_of(m, index)}: {libc.reason(e)}") from None
        self._generated_files()
        for fd, attrs in self.read_only_at_end:
            libc.mount_setattr_fd(fd, attrs, recursive=False)
            os.close(fd)
        self._read_only_way()
        for sources in self.sources.values():
            for s in sources:
                if s.fd is not None:
                    os.close(s.fd)
        os.close(self.root_fd)
        self._pivot()

    def _open_sources(self) -> None:
        if self.rootfs:
            source = Source(self.rootfs, "--rootfs")
            if not source.is_dir():
                raise RootsandError(f"--rootfs: {self.rootfs} is not a directory")
            self.rootfs_tree = source.clone(libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV)
            os.close(source.fd)
        for index, m in enumerate(self.mounts):
            what = origin_of(m, index)
            if m.kind == "absent":
                continue
            try:
                if m.type in BIND_TYPES:
                    source = Source(m.src, what, m.optional)
                    self.sources[index] = [source]
                    if not source.missing:
                        self.trees[index] = [source.clone(attrs_of(m.flags))]
                elif m.type == "overlay":
                    self._open_overlay(index, m, what)
            except OSError as e:
                raise RootsandError(f"{what}: {libc.reason(e)}") from None

    # -- targets inside the new root --------------------------------------------------------------------

    def _walk(self, dst: str, create: str | None = None, parents: int = 0o755) -> tuple[int | None, str]:
        """An O_PATH fd of `dst` inside the new root and its path there, symlinks resolved as if the new root
        were /. One component at a time, each opened without following links relative to its parent's fd,
        so a link swapped in meanwhile can only send the walk elsewhere inside the new root, never out.

        create: None (it must exist), "dir" (missing components made as directories), "file" (missing
        parents as directories, the last as an empty file), or "resolve" (no fd, nothing made: the path it
        would have, missing components appended as they are).
        """
        parts = split_path(dst)
        stack = [(os.dup(self.root_fd), "/")]
        links = 0
        try:
            while parts:
                part = parts.pop(0)
                if part == "..":
                    if len(stack) > 1:
                        os.close(stack.pop()[0])
                    continue
                dir_fd, dir_path = stack[-1]
                path = os.path.join(dir_path, part)
                made = False
                try:
                    fd = open_at(dir_fd, part)
                except FileNotFoundError:
                    if create == "resolve":
                        return None, os.path.join(path, *parts)
                    if create is None:
                        raise FileNotFoundError(errno.ENOENT, f"{path} does not exist") from None
                    if create == "file" and not parts:
                        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444,
                                         dir_fd=dir_fd))
                    else:
                        os.mkdir(part, parents, dir_fd=dir_fd)
                        made = True
                    fd = open_at(dir_fd, part)
                st = os.fstat(fd)
                mode = st.st_mode
                if made:
                    self.made_dirs.add((st.st_dev, st.st_ino))
                if stat.S_ISLNK(mode):
                    target = os.readlink("", dir_fd=fd)  # the link this fd holds, not whatever is there now
                    os.close(fd)
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, f"{dst}: too many levels of symbolic links")
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    parts = split_path(target) + parts
                    continue
                stack.append((fd, path))
                if parts and not stat.S_ISDIR(mode):
                    raise NotADirectoryError(errno.ENOTDIR, f"{path} is not a directory")
            fd, path = stack.pop()
            if create == "resolve":
                os.close(fd)
                return None, path
            return fd, path
        finally:
            for fd, _ in stack:
                os.close(fd)

    def _target(self, dst: str, directory: bool = True, parents: int | None = None) -> tuple[int, str]:
        """The mount point `dst`, made when missing (a directory, or an empty file for a file bind)."""
        try:
            return self._walk(dst, "dir" if directory else "file", 0o755 if parents is None else parents)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.ENOENT):
                raise RootsandError(f"cannot create the mount point {dst} in the sandbox: {e.strerror}",
                                    hint="its parent is read-only or a file: mount something writable there "
                                         "first") from None
            raise

    def _attach(self, tree: int, target_fd: int, what: str) -> None:
        """Attach a detached mount onto target_fd; both fds are used up."""
        try:
            libc.move_mount(tree, target_fd, what)
        finally:
            os.close(target_fd)
            os.close(tree)

    def _mount_new(self, dst: str, fstype: str, options: dict, attrs: int) -> int:
        """A new file system on `dst`; returns an fd of its root (the caller closes it)."""
        target, _ = self._target(dst)
        tree = new_fs(fstype, options, attrs)
        try:
            libc.move_mount(tree, target, dst)
        except OSError:
            os.close(tree)
            raise
        finally:
            os.close(target)
        return tree

    # -- one method per mount type; each gets the op, its opened sources and its detached trees ---------

    def _bind(self, m, sources, trees) -> None:
        source_is_dir = sources[0].is_dir()
        target, path = self._target(m.dst, source_is_dir)
        target_is_dir = stat.S_ISDIR(os.fstat(target).st_mode)
        if target_is_dir != source_is_dir:
            os.close(target)
            os.close(trees[0])
            dir_one, other = (m.dst, m.src) if target_is_dir else (m.src, m.dst)
            raise RootsandError(f"{dir_one} is a directory and {other} is not")
        self._attach(trees[0], target, m.dst)
        self.host_backed.append(path)

    def _tmpfs(self, m, _sources, _trees) -> None:
        os.close(self._mount_new(m.dst, "tmpfs", m.options, attrs_of(m.flags)))

    def _symlink(self, m, _sources, _trees) -> None:
        parent_dst, name = os.path.split(m.dst.rstrip("/"))
        self._refuse_host_write(m, os.path.join(self._walk(parent_dst, "resolve")[1], name))
        parent, _ = self._target(parent_dst)
        try:
            try:
                existing = os.readlink(name, dir_fd=parent)
                if existing == m.src:
                    return
                if m.on_host:  # bubblewrap's words
                    raise RootsandError(f"Can't make symlink at {m.dst}: existing destination is {existing}")
            except OSError:
                pass
            os.symlink(m.src, name, dir_fd=parent)
        finally:
            os.close(parent)

    def _dir(self, m, _sources, _trees) -> None:
        self._refuse_host_write(m, self._walk(m.dst, "resolve")[1])
        if m.parents is not None:  # bwrap: an existing directory stays as it is; a new one gets the mode
            parent_dst, name = os.path.split(m.dst.rstrip("/"))
            parent, _ = self._target(parent_dst, parents=m.parents)
            try:
                os.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                return
            finally:
                os.close(parent)
        target, _ = self._target(m.dst)
        try:
            os.chmod(f"/proc/self/fd/{target}", m.mode if m.mode is not None else 0o755)
        finally:
            os.close(target)

    def _file(self, m, _sources, _trees) -> None:
        parent_dst, name = os.path.split(m.dst)
        self._refuse_host_write(m, os.path.join(self._walk(parent_dst, "resolve")[1], name))
        parent, _ = self._target(parent_dst, parents=m.parents)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=parent)
        finally:
            os.close(parent)
        try:
            os.write(fd, m.content.encode())
            os.fchmod(fd, m.mode if m.mode is not None else 0o644)
        finally:
            os.close(fd)

    def _chmod(self, m, _sources, _trees) -> None:
        target, _ = self._walk(m.dst)  # bwrap: it must exist
        try:
            os.chmod(f"/proc/self/fd/{target}", m.mode)
        finally:
            os.close(target)

    def _remount_ro(self, m, _sources, _trees) -> None:
        target, _ = self._walk(m.dst)
        try:
            libc.mount_setattr_fd(target, libc.MOUNT_ATTR_RDONLY, recursive=False, what=m.dst)
        finally:
            os.close(target)

    def _data(self, m, _sources, _trees) -> None:
        """bwrap's --bind-data and --ro-bind-data: the content in a file of the staging area, bound on dst."""
        self._data_files = getattr(self, "_data_files", 0) + 1
        path = f"{STAGING}/data-{self._data_files}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, m.content.encode("utf-8", "surrogateescape"))
            os.fchmod(fd, m.mode if m.mode is not None else 0o600)
        finally:
            os.close(fd)
        target, _ = self._target(m.dst, directory=False, parents=m.parents)
        tree = libc.open_tree(libc.AT_FDCWD, path, libc.OPEN_TREE_CLONE)
        try:
            libc.mount_setattr_fd(tree, attrs_of(m.flags) | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                                  recursive=False, what=m.dst)
        except OSError:
            os.close(tree)
            os.close(target)
            raise
        self._attach(tree, target, m.dst)

    def _on_host(self, path: str) -> str | None:
        """The host-backed mount that `path` (inside the new root) falls in, if any."""
        return next((top for top in self.host_backed if hostpaths.is_below(path, top)), None)

    def _refuse_host_write(self, m, path: str) -> None:
        """`dir` and `file` build the sandbox; they must never chmod or overwrite the user's own files."""
        top = None if m.on_host else self._on_host(path)
        if top:
            raise RootsandError(f"{m.type} on {m.dst}: it would change the user's files bound at {top}",
                                hint="put it on a tmpfs, or mount it before that bind")

    def _generated_files(self) -> None:
        """Put rootsand's own /etc files over the host's, without touching them; skip where /etc has no place."""
        for name, content in self.generated.items():
            path = f"{STAGING}/etc-{name}"
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, 0o644)
            _, resolved = self._walk(f"/etc/{name}", "resolve")
            if self._on_host(resolved) and not self._exists(f"/etc/{name}"):
                continue  # it would be created among the user's files (a --rootfs tree, a bound /etc)
            try:  # follows a link such as resolv.conf -> /run/...: the file is made where it leads
                target, _ = self._walk(f"/etc/{name}", "file")
            except OSError:
                continue  # a read-only /etc without that file: leave it out
            if not stat.S_ISREG(os.fstat(target).st_mode):
                os.close(target)
                continue
            tree = libc.open_tree(libc.AT_FDCWD, path, libc.OPEN_TREE_CLONE)
            libc.mount_setattr_fd(tree, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                                  recursive=False, what=f"/etc/{name}")
            self._attach(tree, target, f"/etc/{name}")

    def _read_only_way(self) -> None:
        """The directories setup made on the way to the working directory where nothing reaches the host (a
        tmpfs such as $HOME's or /tmp, a throw-away overlay) turn read-only, with everything below them but the
        mounts there (the current directory's bind): what a command writes beside its directory (`../*.deb`)
        fails instead of vanishing at exit. Each run of them in one file system gets a read-only bind of its
        top over itself."""
        try:
            _, resolved = self._walk(self.workdir, "resolve")
        except OSError:
            return  # the command's chdir says why
        path, parent_dev = "/", None
        for part in split_path(resolved)[:-1]:
            path = os.path.join(path, part)
            try:
                fd, _ = self._walk(path)
            except OSError:
                return
            try:
                st = os.fstat(fd)
                dev, made = st.st_dev, (st.st_dev, st.st_ino) in self.made_dirs
                if made and not self._on_host(path) and dev != parent_dev:
                    tree = libc.open_tree(fd, "", libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE | libc.AT_EMPTY_PATH, path)
                    try:
                        libc.mount_setattr_fd(tree, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID
                                              | libc.MOUNT_ATTR_NODEV, recursive=False, what=path)
                    except OSError:
                        os.close(tree)
                        raise
                    self._attach(tree, os.dup(fd), path)
                parent_dev = dev if made else None
            finally:
                os.close(fd)

    def _exists(self, dst: str) -> bool:
        try:
            fd, _ = self._walk(dst)
        except OSError:
            return False
        os.close(fd)
        return True

    def _pivot(self) -> None:
        os.chdir(ROOT)
        libc.pivot_root(".", ".")  # the old root now sits on top of the new one, at the same place
        libc.umount2(".", libc.MNT_DETACH)
        os.chdir("/")
        if not self.rootfs and not self.root_covered:
            # Nothing is writable unless a mount makes it so.
            libc.mount_setattr("/", libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                               recursive=False)


FileSystem.BUILDERS = {
    "bind": FileSystem._bind, "ro-bind": FileSystem._bind, "dev-bind": FileSystem._bind,
    "tmpfs": FileSystem._tmpfs, "proc": FileSystem._proc, "dev": FileSystem._dev, "mqueue": FileSystem._mqueue,
    "overlay": FileSystem._overlay, "symlink": FileSystem._symlink, "dir": FileSystem._dir, "file": FileSystem._file,
    "chmod": FileSystem._chmod, "remount-ro": FileSystem._remount_ro, "data": FileSystem._data,
}


