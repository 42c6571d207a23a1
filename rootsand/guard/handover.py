"""What a run leaves to the user (plan.Handover), done by the launcher once the sandbox is gone.

- The staging directory: the parent of the current directory inside is a directory the launcher made for
  the run beside the current directory on the host, holding only its mount point. After the command, the
  package files at its top (regular files, one link, a printable name matching the profile's
  parent_products) are carried to the host's parent directory, made the user's; whatever else was written
  there is removed, and named in one line. Nothing is followed, opened for reading or copied: each file is
  checked through an O_PATH descriptor, linked into the parent under a temporary name from that descriptor
  (so what lands there is the file that was checked, whatever a second sandbox renames meanwhile), then
  renamed over the product's name, which is replaced only when it is a regular file.
- The top of the directory the run started in: the regular files the command made there as its own id
  (the fakeroot profile's root, a subordinate id) become the user's; what lies below keeps its owners.

Both run in the sandbox's user namespace (guard/subids.py), whose capabilities cover every owner the
sandbox could give. A killed launcher's staging directory is removed by the next sweep (guard/leftovers.py,
remove_staging): its build was cut short, so what it holds is discarded, and named.
"""

import errno
import fnmatch
import os
import stat

from rootsand.errors import RootsandError, printable

FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Handover:
    """The launcher's side: the descriptors taken before the sandbox starts, the work after it."""

    def __init__(self, plan_handover, command_uid: int, user_ids: tuple[int, int], since: float):
        self.plan = plan_handover  # the resolved plan.Handover
        self.command_uid = command_uid  # the command's uid inside
        self.user_ids = user_ids  # the user's ids inside
        self.since = since  # the run's start, for the top's files
        self.parent_fd: int | None = None
        self.staging_fd: int | None = None
        self.top_fd: int | None = None

    def prepare(self) -> None:
        """Make the staging directory (mode 0700, the user's) with the mount point in it, and hold it, its
        parent and the top: a link planted on the way later leads nowhere."""
        from rootsand.guard.hostpaths import open_nofollow

        h = self.plan
        if h.staging:
            name = os.path.basename(h.staging)
            try:
                self.parent_fd = open_nofollow(h.parent, FLAGS)
                os.mkdir(name, 0o700, dir_fd=self.parent_fd)
                self.staging_fd = os.open(name, FLAGS, dir_fd=self.parent_fd)
                os.mkdir(h.mount_point, 0o755, dir_fd=self.staging_fd)
            except OSError as e:
                why = "it exists (another sandbox's, or something put there)" if e.errno == errno.EEXIST else e.strerror
                raise RootsandError(f"cannot make the staging directory {h.staging} for the parent of the current "
                                    f"directory: {why}", hint="remove it, or run from another directory") from None
        if h.top:
            try:
                self.top_fd = open_nofollow(h.top, FLAGS)
            except OSError:
                self.top_fd = None  # gone or replaced: nothing of it is handed over

    def finish(self, ids, userns_fd: int | None) -> list[str]:
        """Carry the products, discard the rest, remove the staging directory, make the top's new files the
        user's. The warnings to say."""
        if self.staging_fd is None and self.top_fd is None:
            return []
        from rootsand.guard.subids import as_sandbox_root

        h = self.plan
        records, problem = as_sandbox_root(lambda out: self._work(out), ids, userns_fd)
        discarded = [r[1:] for r in records if r.startswith("-")]
        warnings = [printable(r[1:]) for r in records if r.startswith("!")]
        if discarded:
            warnings.append(printable(
                f"discarded what the command wrote beside the current directory, in {h.parent} (only files named "
                f"{' '.join(h.keep)} are kept there): " + ", ".join(discarded[:10])
                + (f" and {len(discarded) - 10} more" if len(discarded) > 10 else "")))
        if problem:
            warnings.append(f"could not hand over what the run left ({problem})"
                            + (f": remove {h.staging} with 'rootsand unshare -- rm -rf {h.staging}'" if h.staging else ""))
        for fd in (self.staging_fd, self.parent_fd, self.top_fd):
            if fd is not None:
                os.close(fd)
        self.staging_fd = self.parent_fd = self.top_fd = None
        return warnings

    def _work(self, out) -> None:
        """In the sandbox's user namespace: records "+NAME" carried, "-NAME" discarded, "=NAME" made the
        user's, "!TEXT" a problem, each ended by NUL."""
        h = self.plan
        if self.staging_fd is not None:
            names = os.listdir(self.staging_fd)
            # Judged on one look at them all, before any is moved: a product hard linked to another name
            # there has two links, whichever is handled first
            products = {}
            for name in names:
                try:
                    st = os.stat(name, dir_fd=self.staging_fd, follow_symlinks=False)
                except OSError:
                    continue
                if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and name.isprintable()
                        and any(fnmatch.fnmatchcase(name, pattern) for pattern in h.keep)):
                    products[name] = (st.st_dev, st.st_ino)
            for name in names:
                try:
                    out.write(self._stage_out(name, products.get(name)))
                except OSError as e:
                    out.write(f"!{os.path.join(h.staging, name)}: {e.strerror}\0")
            try:
                remove_dir(self.parent_fd, os.path.basename(h.staging), self.staging_fd)
            except OSError as e:
                out.write(f"!cannot remove the staging directory {h.staging}: {e.strerror}\0")
        if self.top_fd is not None:
            for name in os.listdir(self.top_fd):
                if self._make_users(self.top_fd, name):
                    out.write(f"={name}\0")

    def _stage_out(self, name: str, product: tuple[int, int] | None) -> str:
        """One entry at the top of the staging directory: carried when it is the product seen before
        (`product`: its identity), else removed; its record."""
        h = self.plan
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.staging_fd)
        except FileNotFoundError:
            return ""
        try:
            st = os.fstat(fd)
            if name == h.mount_point and stat.S_ISDIR(st.st_mode) and not os.listdir(f"/proc/self/fd/{fd}"):
                os.rmdir(name, dir_fd=self.staging_fd)  # the current directory's mount point, ours
                return ""
            if not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and product == (st.st_dev, st.st_ino)):
                remove_tree(self.staging_fd, name)
                return f"-{name}{'/' if stat.S_ISDIR(st.st_mode) else ''}\0"
            try:
                there = os.stat(name, dir_fd=self.parent_fd, follow_symlinks=False)
            except FileNotFoundError:
                there = None
            if there is not None and not stat.S_ISREG(there.st_mode):
                remove_tree(self.staging_fd, name)
                return f"!{os.path.join(h.parent, name)} is not a regular file: not replaced by the {name} the command " \
                       "wrote, which is discarded\0"
            # The user's, no setuid or setgid bit (chown drops them; the mode says so too), then linked from the
            # descriptor under a temporary name and renamed over the product's name
            os.chown(f"/proc/self/fd/{fd}", *self.user_ids)
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) & 0o777)
            temporary = f".rootsand-carry-{os.getpid()}-{os.urandom(6).hex()}"
            os.link(f"/proc/self/fd/{fd}", temporary, dst_dir_fd=self.parent_fd)
            try:
                os.rename(temporary, name, src_dir_fd=self.parent_fd, dst_dir_fd=self.parent_fd)
            except OSError:
                os.unlink(temporary, dir_fd=self.parent_fd)
                raise
            os.unlink(name, dir_fd=self.staging_fd)
            return f"+{name}\0"
        finally:
            os.close(fd)

    def _make_users(self, dir_fd: int, name: str) -> bool:
        """A regular file at the top that the command made as its own id during the run (one link: not a
        tree's file seen twice) becomes the user's. True when it did."""
        try:
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            return False
        try:
            st = os.fstat(fd)
            if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid == self.command_uid
                    and st.st_uid != self.user_ids[0] and st.st_ctime >= self.since):
                os.chown(f"/proc/self/fd/{fd}", *self.user_ids)  # drops setuid and setgid bits
                return True
            return False
        except OSError:
            return False
        finally:
            os.close(fd)


def remove_tree(dir_fd: int, name: str) -> None:
    """rm -rf of dir_fd/name, following no link, depth first with a descriptor per level (no recursion)."""
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dir_fd)
        return
    remove_dir(dir_fd, name, os.open(name, FLAGS, dir_fd=dir_fd))


def remove_dir(dir_fd: int, name: str, fd: int) -> None:
    """Remove the directory `fd` (named `name` in dir_fd) with all it holds; `fd` is used up."""
    stack = [(fd, name, iter(os.listdir(fd)))]
    try:
        while stack:
            fd, _, names = stack[-1]
            entry = next(names, None)
            if entry is None:
                os.close(fd)
                _, done, _ = stack.pop()
                os.rmdir(done, dir_fd=stack[-1][0] if stack else dir_fd)
                continue
            if stat.S_ISDIR(os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode):
                sub = os.open(entry, FLAGS, dir_fd=fd)
                stack.append((sub, entry, iter(os.listdir(sub))))
            else:
                os.unlink(entry, dir_fd=fd)
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def remove_staging(path: str, mount_point: str, ids) -> list[str]:
    """A killed launcher's staging directory (its build was cut short): removed with all it holds, through a
    user namespace with the sandbox's map. The warnings to say."""
    from rootsand.guard.hostpaths import open_nofollow
    from rootsand.guard.subids import as_sandbox_root

    parent, name = os.path.split(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        return [printable(f"cannot look at the staging directory {path} of a killed sandbox: {e.strerror}")]
    if not stat.S_ISDIR(st.st_mode):
        return [printable(f"{path}, the staging directory of a killed sandbox, is no directory now: left as it is")]

    def work(out) -> None:
        parent_fd = open_nofollow(parent, FLAGS)
        try:
            fd = os.open(name, FLAGS, dir_fd=parent_fd)
            names = os.listdir(fd)
            remove_dir(parent_fd, name, fd)
            out.writelines(f"-{entry}\0" for entry in names)
        finally:
            os.close(parent_fd)

    records, problem = as_sandbox_root(work, ids)
    discarded = [r[1:] for r in records if r[1:] != mount_point]
    if problem:
        return [printable(f"cannot remove {path}, the staging directory of a killed sandbox ({problem}): "
                          f"'rootsand unshare -- rm -rf {path}' does")]
    return [printable(f"removed {path}, the staging directory of a sandbox whose launcher was killed"
                      + (": discarded " + ", ".join(discarded) if discarded else ""))]
