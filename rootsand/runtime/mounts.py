"""The sandbox's file system: an empty tmpfs root, the profile's mounts in order, pivot_root, read-only last.

Runs in PID 1, in the sandbox's own mount namespace, after the ids are mapped. The order is bubblewrap's,
and every mount is built on file descriptors, never on paths a second sandbox could swap for a link:

  1. every mount below / becomes a slave, so nothing done here reaches the host;
  2. every host path the mounts need is opened without following any link (the launcher resolved and
     checked them: hostpaths.py), and each bind source is cloned at once into a detached tree whose
     read-only, nosuid and nodev flags are set before it is attached anywhere;
  3. only then a staging tmpfs covers /tmp (in this namespace only) and holds the new root, itself a
     tmpfs, beside the upper layers of throw-away overlays and generated files: since every clone was
     taken before, no bind can carry the staging area into the sandbox;
  4. each mount op is applied onto a target opened inside the new root component by component, links
     resolved as if the new root were / (so nothing leads out of it);
  5. pivot_root into the new root, the old one detached, and the root tmpfs made read-only.
"""

import errno
import os
import re
import stat

from rootsand.config import host
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


class Source:
    """A host path opened (O_PATH, no link followed) before anything is covered; /proc/self/fd/N from then on."""

    def __init__(self, path: str, what: str, optional: bool = False):
        self.path = path
        self.fd: int | None = None
        try:
            self.fd = hostpaths.open_nofollow(path, os.O_PATH)
        except FileNotFoundError:
            if not optional:
                raise RootsandError(f"{what}: {path} does not exist", hint="create it" + (
                    ", or mark the mount optional = true" if what.startswith("profile") else "")) from None
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

    def owner_unmapped(self) -> bool:
        """True when the source belongs to ids outside the sandbox's map (they show as the overflow id)."""
        st = os.stat(self.ref)
        overflow = (_overflow_id("uid"), _overflow_id("gid"))
        return st.st_uid == overflow[0] or st.st_gid == overflow[1]

    def clone(self, attrs: int) -> int:
        """A detached copy of the mount tree at this source, with `attrs` set on all of it before it is attached."""
        tree = libc.open_tree(self.fd, "", libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE | libc.AT_EMPTY_PATH, self.path)
        try:
            libc.mount_setattr_fd(tree, attrs, what=self.path)
        except OSError:
            os.close(tree)
            raise
        return tree


def _overflow_id(kind: str) -> int:
    return int(host.read_sysctl(f"/proc/sys/kernel/overflow{kind}") or 65534)


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


def _open_at(dir_fd: int, name: str) -> int:
    return os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _split(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


class FileSystem:
    """Builds the sandbox's root from a plan's mount steps (plan.MountStep), then pivots into it."""

    def __init__(self, mounts: list, rootfs: str | None, run_ids: tuple[int, int],
                 generated: dict[str, str] | None = None, sysctls: dict[str, str] | None = None,
                 protected: list | None = None, home_guards: list | None = None):
        self.mounts = mounts
        self.home_guards = home_guards or []  # homerule.HomeGuard: applied after every mount, before protect
        self.protected = protected or []  # plan.Protected: made read-only after every mount
        self.protected_paths: list[tuple[str, bool]] = []  # (inside, made): what protect() did, for --verbose
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
        for index, m in enumerate(self.mounts):
            sources = self.sources.get(index, [])
            if any(s.missing for s in sources):
                continue  # optional and absent
            try:
                self.BUILDERS[m.type](self, m, sources, self.trees.get(index, []))
            except OSError as e:
                raise RootsandError(f"{_origin(m, index)}: {libc.reason(e)}") from None
            except RootsandError as e:
                raise RootsandError(f"{_origin(m, index)}: {e.message}", e.hint) from None
            self._guard_homes(index)  # before later mounts: they stay as they are (the build's caches)
        self._protect()
        self._generated_files()
        for fd, attrs in self.read_only_at_end:
            libc.mount_setattr_fd(fd, attrs, recursive=False)
            os.close(fd)
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
            what = _origin(m, index)
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

    def _open_overlay(self, index: int, m, what: str) -> None:
        srcs = [Source(lower, what, m.optional) for lower in m.lower]
        if any(s.missing for s in srcs):
            self.sources[index] = srcs
            return
        if m.upper != "tmpfs":
            upper_fd = _make_dirs(m.upper, what + " upper", 0o755)
            os.close(upper_fd)
            work = _work_dir_for(m.upper)
            os.close(_make_dirs(work, what + " work dir", 0o700))
            srcs += [Source(m.upper, what + " upper"), Source(work, what + " work dir")]
        self.sources[index] = srcs
        if any(s.owner_unmapped() for s in srcs[:len(m.lower)]):
            # fuse-overlayfs reaches its layers by path: clones of them, attached in the staging area later.
            self.trees[index] = [s.clone(0) for s in srcs]

    # -- targets inside the new root --------------------------------------------------------------------

    def _walk(self, dst: str, create: str | None = None) -> tuple[int | None, str]:
        """An O_PATH fd of `dst` inside the new root and its path there, symlinks resolved as if the new root
        were /. One component at a time, each opened without following links relative to its parent's fd,
        so a link swapped in meanwhile can only send the walk elsewhere inside the new root, never out.

        create: None (it must exist), "dir" (missing components made as directories), "file" (missing
        parents as directories, the last as an empty file), or "resolve" (no fd, nothing made: the path it
        would have, missing components appended as they are).
        """
        parts = _split(dst)
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
                try:
                    fd = _open_at(dir_fd, part)
                except FileNotFoundError:
                    if create == "resolve":
                        return None, os.path.join(path, *parts)
                    if create is None:
                        raise FileNotFoundError(errno.ENOENT, f"{path} does not exist") from None
                    if create == "file" and not parts:
                        os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444,
                                         dir_fd=dir_fd))
                    else:
                        os.mkdir(part, 0o755, dir_fd=dir_fd)
                    fd = _open_at(dir_fd, part)
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode):
                    target = os.readlink("", dir_fd=fd)  # the link this fd holds, not whatever is there now
                    os.close(fd)
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, f"{dst}: too many levels of symbolic links")
                    if target.startswith("/"):
                        while len(stack) > 1:
                            os.close(stack.pop()[0])
                    parts = _split(target) + parts
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

    def _target(self, dst: str, directory: bool = True) -> tuple[int, str]:
        """The mount point `dst`, made when missing (a directory, or an empty file for a file bind)."""
        try:
            return self._walk(dst, "dir" if directory else "file")
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

    def _proc(self, m, _sources, _trees) -> None:
        target, _ = self._target(m.dst)
        try:
            proc = new_fs("proc", {}, attrs_of(m.flags))
        except PermissionError:
            # Under a /proc with parts covered (a container's, an outer sandbox's) the kernel refuses a new
            # procfs in a user namespace: the one there is, as it is (it shows the outer PID namespace).
            proc = libc.open_tree(libc.AT_FDCWD, "/proc", libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE)
            libc.mount_setattr_fd(proc, attrs_of(m.flags), what="/proc")
            self.notes.append("a new /proc cannot be mounted under this /proc, whose parts are covered: the "
                              "sandbox sees the outer one (its processes, not the sandbox's alone)")
        try:
            libc.move_mount(proc, target, m.dst)
        except OSError:
            os.close(proc)
            raise
        finally:
            os.close(target)
        try:
            self._write_sysctls(proc)
            for sub in m.read_only:
                self._cover(proc, sub, lambda: libc.open_tree(proc, sub, libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE),
                            READ_ONLY)
            empty = f"{STAGING}/empty"
            if not os.path.exists(empty):
                os.close(os.open(empty, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
            for name in m.masked:  # a file gets an empty file over it, a directory an empty tmpfs
                try:
                    is_dir = stat.S_ISDIR(os.stat(name, dir_fd=proc, follow_symlinks=False).st_mode)
                except FileNotFoundError:
                    continue
                if is_dir:
                    self._cover(proc, name, lambda: new_fs("tmpfs", {"mode": "0555", "size": "4k"}, READ_ONLY), 0)
                else:
                    self._cover(proc, name, lambda: libc.open_tree(libc.AT_FDCWD, empty, libc.OPEN_TREE_CLONE),
                                READ_ONLY)
        finally:
            os.close(proc)

    def _cover(self, dir_fd: int, name: str, make_tree, attrs: int) -> None:
        """Put the mount make_tree() returns over dir_fd/name, when that exists."""
        try:
            target = _open_at(dir_fd, name)
        except FileNotFoundError:
            return
        tree = make_tree()
        if attrs:
            try:
                libc.mount_setattr_fd(tree, attrs, what=name)
            except OSError:
                os.close(tree)
                os.close(target)
                raise
        self._attach(tree, target, name)

    def _write_sysctls(self, proc: int) -> None:
        for name, value in self.sysctls.items():
            try:
                fd = os.open(f"sys/{name}", os.O_WRONLY | os.O_CLOEXEC, dir_fd=proc)
                try:
                    os.write(fd, value.encode())
                finally:
                    os.close(fd)
            except OSError as e:
                self.sysctl_failures.append(f"/proc/sys/{name} = {value}: {e.strerror}")

    def _dev(self, m, _sources, _trees) -> None:
        """A minimal /dev: the harmless nodes bound from the host, a private devpts, shm, the usual links."""
        dev = self._mount_new(m.dst, "tmpfs", {"mode": m.options["mode"], "size": m.options["size"]},
                              attrs_of(m.flags, leave_out="ro"))
        for node in m.nodes:
            os.close(os.open(node, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=dev))
            self._cover(dev, node, lambda: libc.open_tree(libc.AT_FDCWD, f"/dev/{node}", libc.OPEN_TREE_CLONE),
                        libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC)
        os.mkdir("pts", 0o755, dir_fd=dev)
        pts = {"newinstance": True, "ptmxmode": "0666", "mode": "0620", "max": m.options.get("pts_max", "64")}
        self._cover(dev, "pts", lambda: new_fs("devpts", pts,
                                               libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC), 0)
        os.symlink("pts/ptmx", "ptmx", dir_fd=dev)
        os.mkdir("shm", 0o755, dir_fd=dev)
        shm = {"mode": "1777", **({"size": m.options["shm_size"]} if "shm_size" in m.options else {})}
        self._cover(dev, "shm", lambda: new_fs("tmpfs", shm, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV), 0)
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                           ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
            os.symlink(link, name, dir_fd=dev)
        if "ro" in m.flags:
            self.read_only_at_end.append((dev, attrs_of(m.flags)))  # its own tmpfs only: pts and shm stay writable
        else:
            os.close(dev)

    def _mqueue(self, m, _sources, _trees) -> None:
        os.close(self._mount_new(m.dst, "mqueue", {}, attrs_of(m.flags)))

    def _symlink(self, m, _sources, _trees) -> None:
        parent_dst, name = os.path.split(m.dst)
        self._refuse_host_write(m, os.path.join(self._walk(parent_dst, "resolve")[1], name))
        parent, _ = self._target(parent_dst)
        try:
            try:
                if os.readlink(name, dir_fd=parent) == m.src:
                    return
            except OSError:
                pass
            os.symlink(m.src, name, dir_fd=parent)
        finally:
            os.close(parent)

    def _dir(self, m, _sources, _trees) -> None:
        self._refuse_host_write(m, self._walk(m.dst, "resolve")[1])
        target, _ = self._target(m.dst)
        try:
            os.chmod(f"/proc/self/fd/{target}", m.mode if m.mode is not None else 0o755)
        finally:
            os.close(target)

    def _file(self, m, _sources, _trees) -> None:
        parent_dst, name = os.path.split(m.dst)
        self._refuse_host_write(m, os.path.join(self._walk(parent_dst, "resolve")[1], name))
        parent, _ = self._target(parent_dst)
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

    def _on_host(self, path: str) -> str | None:
        """The host-backed mount that `path` (inside the new root) falls in, if any."""
        return next((top for top in self.host_backed if hostpaths.is_below(path, top)), None)

    def _refuse_host_write(self, m, path: str) -> None:
        """`dir` and `file` build the sandbox; they must never chmod or overwrite the user's own files."""
        top = self._on_host(path)
        if top:
            raise RootsandError(f"{m.type} on {m.dst}: it would change the user's files bound at {top}",
                                hint="put it on a tmpfs, or mount it before that bind")

    def _overlay(self, m, sources, trees) -> None:
        """A writable view of the lower dirs. The kernel's overlay where it can copy up; fuse-overlayfs where
        a lower dir belongs to ids outside the map (host root's /usr/local), which the kernel cannot copy up."""
        lowers = sources[:len(m.lower)]
        self._overlays += 1
        if m.upper == "tmpfs":
            layer = f"{STAGING}/overlay-{self._overlays}"
            os.mkdir(layer, 0o700)
            libc.mount("tmpfs", layer, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                       "mode=0755" + (f",size={m.options['size']}" if "size" in m.options else ""))
            upper, work = f"{layer}/upper", f"{layer}/work"
            os.mkdir(upper, 0o755)
            os.mkdir(work, 0o700)
        else:
            upper, work = sources[-2].ref, sources[-1].ref
        target, path = self._target(m.dst)
        try:
            if m.upper != "tmpfs":
                self.host_backed.append(path)
            if trees:
                self._fuse_overlay(m, lowers, trees, upper, work, target)
                return
            try:
                tree = _kernel_overlay(lowers, upper, work, attrs_of(m.flags))
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                # Before Linux 6.8 there is no "lowerdir+": one string. The lower dirs are all
                # /proc/self/fd/N, so nothing in it needs escaping, and 200 of them fit in its 4096 bytes.
                try:
                    tree = _kernel_overlay(lowers, upper, work, attrs_of(m.flags), one_string=True)
                except OSError as e:
                    held = next((lower.path for lower in lowers if _mounts_below(lower.path)), None)
                    if not (e.errno == errno.EINVAL and held and host.nesting()):
                        raise
                    # The outer sandbox's mounts there (its protected paths) are locked for us, and the kernel
                    # overlays no directory holding locked mounts: its top layer read-only instead, which
                    # keeps the promise that nothing reaches the host (writes fail instead of vanishing).
                    self.warnings.append(f"overlay on {m.dst}: {held} holds mounts of the sandbox this one runs in "
                                         "(its protected paths), which the kernel does not overlay from a nested "
                                         f"user namespace: {m.dst} is read-only instead")
                    tree = lowers[0].clone(READ_ONLY & ~libc.MOUNT_ATTR_NOEXEC)
            self._attach(tree, os.dup(target), m.dst)
        finally:
            os.close(target)

    def _fuse_overlay(self, m, lowers, trees, upper: str, work: str, target: int) -> None:
        binary = host.find_helper("fuse-overlayfs")
        if m.optional and not (binary and os.access("/dev/fuse", os.R_OK | os.W_OK)):
            # An optional overlay (the build profile's /usr/local) without fuse-overlayfs here (a nested
            # sandbox, a container): its lower directory, read-only, rather than no sandbox at all.
            self.notes.append(f"overlay on {m.dst}: fuse-overlayfs or /dev/fuse is missing here: {m.dst} is read-only")
            tree = trees[0]
            libc.mount_setattr_fd(tree, READ_ONLY & ~libc.MOUNT_ATTR_NOEXEC, what=m.dst)
            for other in trees[1:]:
                os.close(other)
            trees.clear()
            self._attach(tree, os.dup(target), m.dst)
            return
        if not binary:
            raise RootsandError(f"overlay on {m.dst}: {lowers[0].path} belongs to ids outside the sandbox, "
                                "which the kernel's overlay cannot copy up, and fuse-overlayfs is not installed",
                                hint="install the 'fuse-overlayfs' package")
        # fuse-overlayfs resolves its layers by path: the clones taken at the start, attached in the
        # staging area (only the persistent upper and work dirs have clones besides the lower ones).
        paths = []
        for i, tree in enumerate(trees):
            path = f"{STAGING}/fuse-{self._overlays}-{i}"
            os.mkdir(path, 0o700)
            self._attach(tree, os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), path)
            paths.append(path)
        trees.clear()
        lower_paths = paths[:len(lowers)]
        if m.upper != "tmpfs":
            upper, work = paths[-2:]
        mount_point = f"{STAGING}/fuse-{self._overlays}"
        os.mkdir(mount_point, 0o755)
        uid, gid = self.run_ids
        options = (f"lowerdir={':'.join(lower_paths)},upperdir={upper},workdir={work},"
                   f"squash_to_uid={uid},squash_to_gid={gid},allow_other")
        import subprocess

        try:
            done = subprocess.run([binary, "-o", options, mount_point], stdin=subprocess.DEVNULL, env={},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RootsandError(f"overlay on {m.dst}: fuse-overlayfs failed: {e}") from None
        if done.returncode != 0:
            detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            hint = None if os.access("/dev/fuse", os.R_OK | os.W_OK) else "/dev/fuse is not usable: chmod 0666 /dev/fuse"
            raise RootsandError(f"overlay on {m.dst}: fuse-overlayfs failed: {detail}", hint=hint)
        mounted = libc.open_tree(libc.AT_FDCWD, mount_point, 0)  # the mount itself, to move it into place
        libc.mount_setattr_fd(mounted, attrs_of(m.flags), recursive=False)
        self._attach(mounted, os.dup(target), m.dst)

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
                for parts in sorted((_split(rel) for rel in guard.writable), key=len):
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
                child = _open_at(fd, part)
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
        parts = _split(item.path)
        try:
            for i, part in enumerate(parts):
                last = i == len(parts) - 1
                inside = os.path.join(path, part)
                if any(inside == done for done, _ in self.protected_paths):
                    return  # read-only already, with all below it (a .git made for .git/hooks/ holds .git/config)
                try:
                    child = _open_at(fd, part)
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
                    self._pin(_open_at(fd, part), inside, read_only=True)
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
                    child = _open_at(fd, part)  # the root of the mount just made
                os.close(fd)
                fd, path = child, inside
        finally:
            os.close(fd)

    def _pin(self, fd: int, what: str, read_only: bool) -> None:
        """Bind `fd` onto itself: a mount point, read-only or not (always nosuid, nodev); uses up fd."""
        tree = libc.open_tree(fd, "", libc.OPEN_TREE_CLONE | libc.AT_EMPTY_PATH, what)
        try:
            attrs = libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | (libc.MOUNT_ATTR_RDONLY if read_only else 0)
            libc.mount_setattr_fd(tree, attrs, recursive=False, what=what)
        except OSError:
            os.close(tree)
            os.close(fd)
            raise
        self._attach(tree, fd, what)

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
        if not self.rootfs:
            # Nothing is writable unless a mount makes it so.
            libc.mount_setattr("/", libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                               recursive=False)


FileSystem.BUILDERS = {
    "bind": FileSystem._bind, "ro-bind": FileSystem._bind, "dev-bind": FileSystem._bind,
    "tmpfs": FileSystem._tmpfs, "proc": FileSystem._proc, "dev": FileSystem._dev, "mqueue": FileSystem._mqueue,
    "overlay": FileSystem._overlay, "symlink": FileSystem._symlink, "dir": FileSystem._dir, "file": FileSystem._file,
}


def _kernel_overlay(lowers: list[Source], upper: str, work: str, attrs: int, one_string: bool = False) -> int:
    """The overlay as a detached mount, through the new mount API: one call per layer ("lowerdir+", Linux
    6.8), so no limit on the layers' paths; or all of them in one string for older kernels."""
    fd = libc.fsopen("overlay")
    try:
        if one_string:
            libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "lowerdir", ":".join(lower.ref for lower in lowers))
        else:
            for lower in lowers:
                libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "lowerdir+", lower.ref)
        libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "upperdir", upper)
        libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "workdir", work)
        libc.fsconfig(fd, libc.FSCONFIG_SET_FLAG, "userxattr")
        libc.fsconfig(fd, libc.FSCONFIG_CMD_CREATE)
        return libc.fsmount(fd, attrs)
    finally:
        os.close(fd)


_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")  # space, tab, newline and backslash in mountinfo's paths


def _mounts_below(path: str) -> bool:
    """Whether a mount point lies strictly below `path` in this mount namespace."""
    prefix = path.rstrip("/") + "/"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4])  # \040 and friends
                if point.startswith(prefix):
                    return True
    except OSError:
        pass
    return False


def _origin(m, index: int) -> str:
    """Who asked for a mount: the profile's file and line, or the command-line option."""
    return m.origin or f"mount {index + 1} ({m.type} on {m.dst})"


def _work_dir_for(upper: str) -> str:
    """The overlay's work dir must be on the upper dir's file system: a hidden sibling, made on first use."""
    parent, name = os.path.split(upper.rstrip("/"))
    return os.path.join(parent, f".{name}.rootsand-work")


def _make_dirs(path: str, what: str, mode: int) -> int:
    """mkdir -p that follows no link (the launcher resolved the path; a link now was planted since): an fd."""
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in _split(path):
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
