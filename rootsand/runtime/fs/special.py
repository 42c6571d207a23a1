"""The file systems that are not the user's files: /proc (read-only and masked parts, sysctls written through
it), a minimal /dev with its own devpts and shm, mqueue."""

import os
import stat

from rootsand.linux import libc
from rootsand.runtime.fs.primitives import READ_ONLY, STAGING, open_at, attrs_of, new_fs


class SpecialMounts:
    """FileSystem's proc, dev and mqueue steps (build.py)."""

    def _proc(self, m, _sources, _trees) -> None:
        target, _ = self._target(m.dst)
        try:
            proc = new_fs("proc", {}, attrs_of(m.flags))
        except PermissionError:
            if m.kind != "new-or-outer":
                raise
            # Refused under a /proc with parts covered by locked mounts (a container's, an outer sandbox's): the
            # one there is, as it is, which shows the outer PID namespace, and the user is told (hostprep.py)
            proc = libc.open_tree(libc.AT_FDCWD, "/proc", libc.OPEN_TREE_CLONE | libc.AT_RECURSIVE)
            libc.mount_setattr_fd(proc, attrs_of(m.flags), what="/proc")
            self.warnings.append("/proc: the kernel mounts no new procfs here (parts of this /proc are covered, "
                                 "as in a container or another sandbox): the sandbox sees the outer one, with the "
                                 "processes outside it")
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
            target = open_at(dir_fd, name)
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
