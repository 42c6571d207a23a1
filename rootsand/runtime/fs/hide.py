"""security.hide: the files below the writable binds that match a pattern when the sandbox is built read as
empty for the run, applied after the protected paths.

Each match gets a read-only bind of one empty file over it: reading gives nothing, writing EROFS, and as a
mount point it cannot be removed, renamed or replaced (EBUSY), nor linked to (the name leads to the empty
file, on another mount: EXDEV). The walk opens every directory relative to its parent without following a
link, so it stays below the bind whatever a second sandbox does meanwhile; a link that matches is followed
in the sandbox's own root (as a reader inside would) and the file it leads to is hidden. Other names of a
hidden file (hard links) in the same tree are hidden too. What the command makes later is not hidden: a
pattern cannot cover a file that is not there yet.
"""

import errno
import os
import re
import stat

from rootsand.errors import RootsandError
from rootsand.guard.hostpaths import is_below
from rootsand.linux import libc
from rootsand.runtime.fs.primitives import READ_ONLY, STAGING, open_at

# Bounds on the start-up cost: entries read in all the walks, and mounts made. Past either the run is refused
# rather than started with files that should be hidden in sight.
MAX_ENTRIES = 500_000
MAX_HIDDEN = 4096
MAX_DEPTH = 256
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def pattern_matcher(patterns: list[str]):
    """matches(path, name): whether a path relative to the bind (and its last component, `name`) matches one
    of the patterns (model.parse_hide_entry): `*` and `?` within a name (a leading dot too), `[...]` a class,
    `**` any number of directories (none too)."""
    def component(part: str) -> str:
        out, i = [], 0
        while i < len(part):
            c = part[i]
            i += 1
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[" and part.find("]", i + (part[i:i + 1] in ("!", "^")) + 1) >= 0:
                negate = part[i:i + 1] in ("!", "^")
                end = part.find("]", i + negate + 1)  # a ] right after [ or [! is one of the class
                body = part[i + negate:end].replace("\\", "\\\\").replace("[", "\\[")
                out.append("[" + ("^/" if negate else "") + body + "]")
                i = end + 1
            else:
                out.append(re.escape(c))
        return "".join(out)

    names, paths = [], []  # `**/NAME` patterns (most) are matched on the name alone: the walk's main cost
    for pattern in patterns:
        parts = pattern.split("/")
        if parts[:-1] == ["**"]:
            names.append(component(parts[-1]))
        else:
            paths.append("".join("(?:[^/]+/)*" if part == "**" else component(part) + "/" for part in parts[:-1])
                         + component(parts[-1]))
    name_match = re.compile("(?:" + "|".join(names) + r")\Z", re.DOTALL).match if names else None
    path_match = re.compile("(?:" + "|".join(paths) + r")\Z", re.DOTALL).match if paths else None

    def matches(path: str, name: str) -> bool:
        return bool(name_match and name_match(name) or path_match and path_match(path))

    return matches


WALKS = 3  # a tree that changes under the walk is walked again, this many times in all, then refused


class _Changed(Exception):
    def __init__(self, path: str):
        super().__init__(path)
        self.path = path


class HiddenFiles:
    """FileSystem's hidden files (build.py)."""

    def _hide(self) -> None:
        if not self.hidden:
            return
        import time

        started = time.monotonic()
        empty = self._empty_file()
        budget = [MAX_ENTRIES]
        try:
            for item in self.hidden:
                if any(s.missing for s in self.sources.get(item.mount, [])):
                    continue  # an optional bind that is not there
                for attempt in range(WALKS):
                    try:
                        self._hide_below(item, empty, budget)
                        break
                    except _Changed as changed:  # walked again: what is hidden stays so
                        if attempt == WALKS - 1:
                            raise RootsandError(
                                f"security.hide: {changed.path} changed while it was looked through (renamed or "
                                "replaced by another process): the sandbox is not started with what is below it "
                                "unhidden", hint="stop what renames there, or --unhide it") from None
                    except OSError as e:
                        raise RootsandError(f"security.hide: {item.dst}: {libc.reason(e)}") from None
        finally:
            os.close(empty)
        self.notes.append(f"security.hide: {MAX_ENTRIES - budget[0]} entries looked through in "
                          f"{time.monotonic() - started:.3f}s, {len(self.hidden_paths)} files hidden")

    def _empty_file(self) -> int:
        """An empty file of the staging tmpfs (never inside the sandbox's root), mode 0444."""
        path = os.path.join(STAGING, "hidden")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
        return os.open(path, os.O_PATH | os.O_CLOEXEC)

    def _hide_below(self, item, empty: int, budget: list[int]) -> None:
        matches, shown = pattern_matcher(item.patterns), set(item.shown)
        followed, wanted = [], set()  # links that match; (dev, ino) of hidden files with other names
        for fd, path, entry, inside in self._tree(item.dst, shown, budget):
            if not matches(path, entry.name):
                continue
            if entry.is_symlink():
                followed.append(inside)
            elif entry.is_file(follow_symlinks=False):
                st = self._hide_file(empty, fd, entry.name, inside)
                if st is not None and st.st_nlink > 1:
                    wanted.add((st.st_dev, st.st_ino))
        for inside in followed:  # as a reader inside would: the file the link leads to in the sandbox's root
            try:
                target, path = self._walk(inside)
            except OSError:
                continue  # dangling, or through a file: nothing to read there
            if not any(is_below(path, top) for top in self.host_backed):
                os.close(target)  # /proc, /dev, a tmpfs: no file of the host's to hide there
                continue
            st = self._hide_fd(empty, target, path)
            if st is not None and st.st_nlink > 1:
                wanted.add((st.st_dev, st.st_ino))
        if wanted:  # other names of a hidden file: a second walk, which reads inode numbers without a stat
            inodes = {ino for _, ino in wanted}
            for fd, path, entry, inside in self._tree(item.dst, shown, budget):
                if entry.inode() in inodes and inside not in self.hidden_paths and entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if (st.st_dev, st.st_ino) in wanted:
                        self._hide_file(empty, fd, entry.name, inside)

    def _tree(self, dst: str, shown: set[str], budget: list[int]):
        """(directory fd, path relative to dst, DirEntry, path inside) of everything below dst but directories
        and what --unhide shows. Depth first, a directory opened relative to its parent and never through a
        link, once the parent's entries are read: as many fds open as the tree is deep."""
        top, top_path = self._walk(dst)
        try:
            if not stat.S_ISDIR(os.fstat(top).st_mode):
                return  # a file bind: nothing below it
            stack = [(os.open(".", _DIRECTORY, dir_fd=top), "", None)]
        finally:
            os.close(top)
        try:
            while stack:
                fd, rel, pending = stack[-1]
                if pending is None:  # not read yet
                    pending = []
                    stack[-1] = (fd, rel, pending)
                    with os.scandir(fd) as entries:
                        for entry in entries:
                            budget[0] -= 1
                            if budget[0] < 0:
                                raise RootsandError(
                                    f"security.hide: more than {MAX_ENTRIES} files and directories to look through "
                                    f"below {top_path}: the sandbox is not started with some of them unhidden",
                                    hint="--unhide DIR leaves a tree out (node_modules), --unhide PATTERN a pattern")
                            path = rel + entry.name
                            if path in shown:
                                continue
                            if entry.is_dir(follow_symlinks=False):
                                pending.append(entry.name)
                            else:
                                yield fd, path, entry, os.path.join(top_path, path)
                if not pending:
                    os.close(fd)
                    stack.pop()
                    continue
                name = pending.pop()
                if len(stack) >= MAX_DEPTH:
                    raise RootsandError(f"security.hide: {os.path.join(top_path, rel, name)} is more than {MAX_DEPTH} "
                                        "directories deep: the sandbox is not started with what is below unhidden",
                                        hint=f"--unhide {os.path.join(top_path, rel, name)} leaves it out")
                try:
                    stack.append((os.open(name, _DIRECTORY, dir_fd=fd), f"{rel}{name}/", None))
                except OSError as e:
                    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        # gone, or swapped for a link or file, since it was read: moved, maybe to where the walk
                        # has been already (a second sandbox renaming there: attack 9, h01)
                        raise _Changed(os.path.join(top_path, rel, name)) from None
                    if e.errno != errno.EACCES:
                        raise
        finally:
            for fd, _, _ in stack:
                os.close(fd)

    def _hide_file(self, empty: int, dir_fd: int, name: str, inside: str):
        """The empty file over the regular file `name` of dir_fd, opened without following; its stat, or None
        when it is no regular file by now (removed, or swapped for something else meanwhile)."""
        try:
            target = open_at(dir_fd, name)
        except FileNotFoundError:
            return None
        return self._hide_fd(empty, target, inside)

    def _hide_fd(self, empty: int, target: int, inside: str):
        """The empty file over the file `target` (an O_PATH fd, used up) when it is a regular file: its stat."""
        st = os.fstat(target)
        if not stat.S_ISREG(st.st_mode) or inside in self.hidden_paths:
            os.close(target)
            return None
        if len(self.hidden_paths) >= MAX_HIDDEN:
            os.close(target)
            raise RootsandError(f"security.hide: more than {MAX_HIDDEN} files to hide", hint="--unhide PATH "
                                "shows a file or a tree, --unhide PATTERN lifts a pattern")
        self._clone_onto(empty, target, READ_ONLY, inside)  # protect.py
        self.hidden_paths[inside] = None
        return st

