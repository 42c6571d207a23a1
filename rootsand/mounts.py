"""The sandbox's file system: an empty tmpfs root, the profile's mounts in order, pivot_root, read-only last.

Runs in PID 1, in the sandbox's own mount namespace, after the ids are mapped. The order is bubblewrap's:

  1. every mount below / becomes a slave, so nothing done here reaches the host;
  2. every host path the mounts need is resolved and opened (O_PATH) while the host's view is intact;
  3. a staging tmpfs covers /tmp (in this namespace only) and holds the new root, itself a tmpfs, beside
     the upper layers of throw-away overlays and generated files, which are never visible inside;
  4. each mount op is applied, sources through /proc/self/fd/N, destinations resolved inside the new
     root (a symlink there can never lead out of it);
  5. pivot_root into the new root, the old one detached, and the root tmpfs made read-only.
"""

import errno
import os
import stat
import subprocess

from rootsand import host, libc
from rootsand.errors import RootsandError

STAGING = "/tmp"
ROOT = f"{STAGING}/root"
DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")
BIND_TYPES = ("bind", "ro-bind", "dev-bind")


class Source:
    """A host path opened before anything is covered, used as /proc/self/fd/N from then on."""

    def __init__(self, path: str, what: str, optional: bool = False):
        self.path = path
        self.fd: int | None = None
        try:
            self.fd = os.open(os.path.realpath(path), os.O_PATH | os.O_CLOEXEC)
        except FileNotFoundError:
            if not optional:
                raise RootsandError(f"{what}: {path} does not exist",
                                    hint="create it, or mark the mount optional = true") from None
        except OSError as e:
            raise RootsandError(f"{what}: cannot open {path}: {e.strerror}") from None

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


def _overflow_id(kind: str) -> int:
    return int(host.read_sysctl(f"/proc/sys/kernel/overflow{kind}") or 65534)


def resolve_in_root(root: str, path: str) -> str:
    """`path` inside `root` with every symlink resolved as if `root` were /, so that nothing leads out of it."""
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 40:
                raise OSError(errno.ELOOP, f"too many symlinks in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            todo = [p for p in target.split("/") if p not in ("", ".")] + todo
            continue
        done.append(part)
    return os.path.join(root, *done)


def _mount_point(root: str, dst: str, directory: bool = True) -> str:
    """Create (if needed) the directory or empty file to mount on; return its path in the staging tree."""
    target = resolve_in_root(root, dst)
    try:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if directory:
            os.makedirs(target, mode=0o755, exist_ok=True)
        elif not os.path.lexists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except OSError as e:
        raise RootsandError(f"cannot create the mount point {dst} in the sandbox: {e.strerror}",
                            hint="its parent is read-only or a file: mount something writable there first") from None
    return target


class FileSystem:
    """Builds the sandbox's root from mount ops (profile.Mount), then pivots into it."""

    def __init__(self, mounts: list, rootfs: str | None, run_ids: tuple[int, int],
                 generated: dict[str, str] | None = None, tmpfs_size: int | None = None):
        self.mounts = mounts
        self.rootfs = rootfs
        # Each tmpfs the sandbox can fill is capped at the memory limit: tmpfs pages are not the command's
        # address space, so RLIMIT_AS alone would let it fill the host's memory through /tmp.
        self.tmpfs_size = tmpfs_size
        self.host_backed: list[str] = []  # staging paths where writes reach the user's files
        self.read_only_at_end: list[str] = []  # rootsand's own tmpfs, once later mounts have their mount points
        self.run_ids = run_ids
        self.generated = generated or {}  # /etc files written by rootsand: hostname, hosts, resolv.conf
        self.sources: dict[int, list[Source]] = {}
        self.rootfs_source: Source | None = None
        self._overlays = 0

    def build(self) -> None:
        libc.mount(None, "/", None, libc.MS_REC | libc.MS_SLAVE)
        self._open_sources()
        libc.mount("tmpfs", STAGING, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=0700")
        os.mkdir(ROOT, 0o755)
        if self.rootfs_source:
            libc.mount(self.rootfs_source.ref, ROOT, None, libc.MS_BIND | libc.MS_REC)
            libc.mount_setattr(ROOT, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV)
            self.host_backed.append(ROOT)
        else:
            # Only mount points and `file` ops live here, and it is read-only in the end.
            libc.mount("tmpfs", ROOT, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, "mode=0755,size=16m")
        for index, m in enumerate(self.mounts):
            sources = self.sources.get(index, [])
            if any(s.missing for s in sources):
                continue  # optional and absent
            try:
                getattr(self, "_" + m.type.replace("-", "_"))(m, sources)
            except OSError as e:
                raise RootsandError(f"mount {index + 1} ({m.type} on {m.dst}): {e.strerror or e}") from None
        self._generated_files()
        for path in self.read_only_at_end:
            libc.mount_setattr(path, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC,
                               recursive=False)
        for sources in self.sources.values():
            for s in sources:
                if s.fd is not None:
                    os.close(s.fd)
        self._pivot()

    def _open_sources(self) -> None:
        if self.rootfs:
            self.rootfs_source = Source(self.rootfs, "--rootfs")
            if not self.rootfs_source.is_dir():
                raise RootsandError(f"--rootfs: {self.rootfs} is not a directory")
        for index, m in enumerate(self.mounts):
            what = f"mount {index + 1} ({m.type} on {m.dst})"
            if m.type in BIND_TYPES:
                self.sources[index] = [Source(m.src, what, m.optional)]
            elif m.type == "overlay":
                srcs = [Source(lower, what, m.optional) for lower in m.lower]
                if m.upper != "tmpfs" and not any(s.missing for s in srcs):
                    _make_dir(m.upper, what + " upper")
                    srcs.append(Source(m.upper, what + " upper"))
                    srcs.append(Source(_work_dir_for(m.upper), what + " work dir"))
                self.sources[index] = srcs

    # -- one method per mount type; each gets the op and its opened sources ---------------------------

    def _bind(self, m, sources, attrs: int = libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV) -> None:
        src = sources[0]
        target = _mount_point(ROOT, m.dst, src.is_dir())
        libc.mount(src.ref, target, None, libc.MS_BIND | libc.MS_REC)
        libc.mount_setattr(target, attrs)  # recursive: covers submounts, keeps the source's locked flags
        self.host_backed.append(target)

    def _ro_bind(self, m, sources) -> None:
        self._bind(m, sources, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV | libc.MOUNT_ATTR_RDONLY)

    def _dev_bind(self, m, sources) -> None:
        self._bind(m, sources, libc.MOUNT_ATTR_NOSUID)

    def _tmpfs(self, m, _sources) -> None:
        target = _mount_point(ROOT, m.dst)
        options = [f"mode={m.mode:o}"] if m.mode is not None else []  # else the kernel's 1777
        sizes = [size for size in (m.size, self.tmpfs_size) if size]
        if sizes:
            options.append(f"size={min(sizes)}")
        libc.mount("tmpfs", target, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV, ",".join(options) or None)

    def _proc(self, m, _sources) -> None:
        target = _mount_point(ROOT, m.dst)
        libc.mount("proc", target, "proc", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
        for sub in PROC_READ_ONLY:
            path = os.path.join(target, sub)
            if os.path.exists(path):
                libc.mount(path, path, None, libc.MS_BIND | libc.MS_REC)
                libc.mount_setattr(path, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV
                                   | libc.MOUNT_ATTR_NOEXEC)

    def _dev(self, m, _sources) -> None:
        """A minimal /dev: the harmless nodes bound from the host, a private devpts, shm, the usual links."""
        target = _mount_point(ROOT, m.dst)
        libc.mount("tmpfs", target, "tmpfs", libc.MS_NOSUID | libc.MS_NOEXEC, "mode=0755,size=1m")
        for node in DEV_NODES:
            path = os.path.join(target, node)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            libc.mount(f"/dev/{node}", path, None, libc.MS_BIND)
            libc.mount_setattr(path, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOEXEC, recursive=False)
        os.mkdir(os.path.join(target, "pts"), 0o755)
        libc.mount("devpts", os.path.join(target, "pts"), "devpts", libc.MS_NOSUID | libc.MS_NOEXEC,
                   "newinstance,ptmxmode=0666,mode=0620")
        os.symlink("pts/ptmx", os.path.join(target, "ptmx"))
        os.mkdir(os.path.join(target, "shm"), 0o755)
        libc.mount("tmpfs", os.path.join(target, "shm"), "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                   "mode=1777" + (f",size={self.tmpfs_size}" if self.tmpfs_size else ""))
        for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                           ("stderr", "/proc/self/fd/2"), ("core", "/proc/kcore")):
            os.symlink(link, os.path.join(target, name))
        self.read_only_at_end.append(target)  # its own tmpfs only: pts and shm stay writable

    def _mqueue(self, m, _sources) -> None:
        target = _mount_point(ROOT, m.dst)
        libc.mount("mqueue", target, "mqueue", libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)

    def _symlink(self, m, _sources) -> None:
        self._refuse_host_write(m, os.path.join(resolve_in_root(ROOT, os.path.dirname(m.dst)),
                                                os.path.basename(m.dst)))
        parent = _mount_point(ROOT, os.path.dirname(m.dst))
        path = os.path.join(parent, os.path.basename(m.dst))
        if os.path.islink(path) and os.readlink(path) == m.src:
            return
        os.symlink(m.src, path)

    def _dir(self, m, _sources) -> None:
        self._refuse_host_write(m, resolve_in_root(ROOT, m.dst))
        target = _mount_point(ROOT, m.dst)
        os.chmod(target, m.mode if m.mode is not None else 0o755)

    def _file(self, m, _sources) -> None:
        parent = resolve_in_root(ROOT, os.path.dirname(m.dst))
        self._refuse_host_write(m, os.path.join(parent, os.path.basename(m.dst)))
        parent = _mount_point(ROOT, os.path.dirname(m.dst))
        path = os.path.join(parent, os.path.basename(m.dst))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, m.content.encode())
            os.fchmod(fd, m.mode if m.mode is not None else 0o644)
        finally:
            os.close(fd)

    def _on_host(self, path: str) -> str | None:
        """The host-backed mount that `path` (in the staging tree) falls in, if any."""
        for top in self.host_backed:
            if path == top or path.startswith(top.rstrip("/") + "/"):
                return top
        return None

    def _refuse_host_write(self, m, path: str) -> None:
        """`dir` and `file` build the sandbox; they must never chmod or overwrite the user's own files."""
        top = self._on_host(path)
        if top:
            raise RootsandError(f"{m.type} on {m.dst}: it would change the user's files bound at "
                                f"{top.removeprefix(ROOT) or '/'}", hint="put it on a tmpfs, or mount it before that bind")

    def _overlay(self, m, sources) -> None:
        """A writable view of the lower dirs. The kernel's overlay where it can copy up; fuse-overlayfs where
        a lower dir belongs to ids outside the map (host root's /usr/local), which the kernel cannot copy up."""
        lowers = sources[:len(m.lower)]
        self._overlays += 1
        if m.upper == "tmpfs":
            layer = f"{STAGING}/overlay-{self._overlays}"
            os.mkdir(layer, 0o700)
            libc.mount("tmpfs", layer, "tmpfs", libc.MS_NOSUID | libc.MS_NODEV,
                       "mode=0755" + (f",size={self.tmpfs_size}" if self.tmpfs_size else ""))
            upper, work = f"{layer}/upper", f"{layer}/work"
            os.mkdir(upper, 0o755)
            os.mkdir(work, 0o700)
        else:
            upper, work = sources[-2].ref, sources[-1].ref
        target = _mount_point(ROOT, m.dst)
        if m.upper != "tmpfs":
            self.host_backed.append(target)
        if any(s.owner_unmapped() for s in lowers):
            self._fuse_overlay(m, lowers, upper, work, target)
            return
        try:
            _kernel_overlay(lowers, upper, work, target)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # Before Linux 6.8 there is no "lowerdir+": one option string. The lower dirs are all
            # /proc/self/fd/N, so nothing in it needs escaping, and 200 of them fit in its 4096 bytes.
            options = f"lowerdir={':'.join(s.ref for s in lowers)},upperdir={upper},workdir={work},userxattr"
            libc.mount("overlay", target, "overlay", 0, options)
        libc.mount_setattr(target, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV, recursive=False)

    def _fuse_overlay(self, m, lowers, upper: str, work: str, target: str) -> None:
        binary = host.find_helper("fuse-overlayfs")
        if not binary:
            raise RootsandError(f"overlay on {m.dst}: {lowers[0].path} belongs to ids outside the sandbox, "
                                "which the kernel's overlay cannot copy up, and fuse-overlayfs is not installed",
                                hint="install the 'fuse-overlayfs' package")
        # fuse-overlayfs resolves its paths itself, and /proc/self/fd/N leads to host paths that the staging
        # tmpfs may cover: give it bind mounts in the staging area instead.
        paths = []
        for i, ref in enumerate([s.ref for s in lowers] + [upper, work]):
            if ref.startswith("/proc/self/fd/"):
                path = f"{STAGING}/fuse-{self._overlays}-{i}"
                os.mkdir(path, 0o700)
                libc.mount(ref, path, None, libc.MS_BIND | libc.MS_REC)
                ref = path
            paths.append(ref)
        *lower_paths, upper, work = paths
        uid, gid = self.run_ids
        options = (f"lowerdir={':'.join(lower_paths)},upperdir={upper},workdir={work},"
                   f"squash_to_uid={uid},squash_to_gid={gid},allow_other")
        try:
            done = subprocess.run([binary, "-o", options, target], stdin=subprocess.DEVNULL, env={},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RootsandError(f"overlay on {m.dst}: fuse-overlayfs failed: {e}") from None
        if done.returncode != 0:
            detail = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
            hint = None if os.access("/dev/fuse", os.R_OK | os.W_OK) else "/dev/fuse is not usable: chmod 0666 /dev/fuse"
            raise RootsandError(f"overlay on {m.dst}: fuse-overlayfs failed: {detail}", hint=hint)
        libc.mount_setattr(target, libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV, recursive=False)

    def _generated_files(self) -> None:
        """Put rootsand's own /etc files over the host's, without touching them; skip where /etc has no place."""
        for name, content in self.generated.items():
            path = f"{STAGING}/etc-{name}"
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, 0o644)
            target = resolve_in_root(ROOT, f"/etc/{name}")
            if not os.path.lexists(target) and self._on_host(target):
                continue  # it would be created among the user's files (a --rootfs tree, a bound /etc)
            try:  # follows a link such as resolv.conf -> /run/...: the file is made where it leads
                target = _mount_point(ROOT, f"/etc/{name}", directory=False)
            except RootsandError:
                continue  # a read-only /etc without that file: leave it out
            if not os.path.isfile(target):
                continue
            libc.mount(path, target, None, libc.MS_BIND)
            libc.mount_setattr(target, libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                               recursive=False)

    def _pivot(self) -> None:
        os.chdir(ROOT)
        libc.pivot_root(".", ".")  # the old root now sits on top of the new one, at the same place
        libc.umount2(".", libc.MNT_DETACH)
        os.chdir("/")
        if not self.rootfs:
            # Nothing is writable unless a mount makes it so.
            libc.mount_setattr("/", libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NODEV,
                               recursive=False)


def _kernel_overlay(lowers: list[Source], upper: str, work: str, target: str) -> None:
    """The overlay through the new mount API: one call per layer, so no limit on the layers' paths."""
    fd = libc.fsopen("overlay")
    try:
        for lower in lowers:
            libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "lowerdir+", lower.ref)
        libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "upperdir", upper)
        libc.fsconfig(fd, libc.FSCONFIG_SET_STRING, "workdir", work)
        libc.fsconfig(fd, libc.FSCONFIG_SET_FLAG, "userxattr")
        libc.fsconfig(fd, libc.FSCONFIG_CMD_CREATE)
        mount_fd = libc.fsmount(fd)
    finally:
        os.close(fd)
    try:
        libc.move_mount_fd(mount_fd, target)
    finally:
        os.close(mount_fd)


def _work_dir_for(upper: str) -> str:
    """The overlay's work dir must be on the upper dir's file system: a hidden sibling, made on first use."""
    parent, name = os.path.split(os.path.realpath(upper).rstrip("/"))
    work = os.path.join(parent, f".{name}.rootsand-work")
    _make_dir(work, "overlay work directory", 0o700)
    return work


def _make_dir(path: str, what: str, mode: int = 0o755) -> None:
    try:
        os.makedirs(path, mode=mode, exist_ok=True)
    except OSError as e:
        raise RootsandError(f"{what}: cannot create {path}: {e.strerror}") from None
