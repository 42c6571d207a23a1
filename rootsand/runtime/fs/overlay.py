"""Overlay steps: the kernel's overlay on the lower dirs' fds, fuse-overlayfs where a lower dir belongs to ids
outside the map, or the lower dir read-only where neither can be had (runtime/hostprep.py decides which)."""

import errno
import os

from rootsand.config import host
from rootsand.errors import RootsandError
from rootsand.linux import libc
from rootsand.runtime.fs.primitives import READ_ONLY, STAGING, Source, make_dirs, attrs_of


class OverlayMounts:
    """FileSystem's overlay steps (build.py)."""

    def _open_overlay(self, index: int, m, what: str) -> None:
        srcs = [Source(lower, what, m.optional) for lower in m.lower]
        if any(s.missing for s in srcs):
            self.sources[index] = srcs
            return
        if m.upper not in ("tmpfs", "none"):
            upper_fd = make_dirs(m.upper, what + " upper", 0o755)
            os.close(upper_fd)
            work = m.work or _work_dir_for(m.upper)
            os.close(make_dirs(work, what + " work dir", 0o700))
            srcs += [Source(m.upper, what + " upper"), Source(work, what + " work dir")]
        self.sources[index] = srcs
        if m.kind == "fuse":
            # fuse-overlayfs reaches its layers by path: clones of them, attached in the staging area later.
            self.trees[index] = [s.clone(0) for s in srcs]

    def _overlay(self, m, sources, trees) -> None:
        """A writable view of the lower dirs. The kernel's overlay where it can copy up; fuse-overlayfs where
        a lower dir belongs to ids outside the map (host root's /usr/local), which the kernel cannot copy up."""
        lowers = sources[:len(m.lower)]
        self._overlays += 1
        if m.upper == "none":
            upper = work = None
        elif m.upper == "tmpfs":
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
            if m.upper not in ("tmpfs", "none"):
                self.host_backed.append(path)
            if trees:
                self._fuse_overlay(m, lowers, trees, upper, work, target)
                return
            if m.kind == "read-only":  # decided by hostprep.py, which said why
                tree = lowers[0].clone(READ_ONLY & ~libc.MOUNT_ATTR_NOEXEC)
            else:
                try:
                    tree = _kernel_overlay(lowers, upper, work, attrs_of(m.flags))
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    # Before Linux 6.8 there is no "lowerdir+": one string. The lower dirs are all
                    # /proc/self/fd/N, so nothing in it needs escaping, and 200 of them fit in its 4096 bytes.
                    tree = _kernel_overlay(lowers, upper, work, attrs_of(m.flags), one_string=True)
            self._attach(tree, os.dup(target), m.dst)
        finally:
            os.close(target)

    def _fuse_overlay(self, m, lowers, trees, upper: str, work: str, target: int) -> None:
        binary = host.find_helper("fuse-overlayfs")
        if not binary:  # gone since hostprep.py found it
            raise RootsandError(f"overlay on {m.dst}: fuse-overlayfs is not installed",
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


def _kernel_overlay(lowers: list[Source], upper: str | None, work: str | None, attrs: int, one_string: bool = False) -> int:
    """The overlay as a detached mount, through the new mount API: one call per layer ("lowerdir+", Linux
    6.8), so no limit on the layers' paths; or all of them in one string for older kernels."""
    fd = libc.fsopen("overlay")
    try:
        if one_string:
            libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "lowerdir", ":".join(lower.ref for lower in lowers))
        else:
            for lower in lowers:
                libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "lowerdir+", lower.ref)
        if upper is not None:  # else read-only: the lower dirs alone
            libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "upperdir", upper)
            libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "workdir", work)
        libc.fsconfig(fd, libc.FSCONFIG_SET_FLAG, "userxattr")
        libc.fsconfig(fd, libc.FSCONFIG_CMD_CREATE)
        return libc.fsmount(fd, attrs)
    finally:
        os.close(fd)


def _work_dir_for(upper: str) -> str:
    """The overlay's work dir must be on the upper dir's file system: a hidden sibling, made on first use."""
    parent, name = os.path.split(upper.rstrip("/"))
    return os.path.join(parent, f".{name}.rootsand-work")
