"""After the sandbox: what it did to git repositories in the user's directories it could write.

git finds a repository in any directory (a `.git` directory, a `.git` file naming one, or a directory
holding HEAD, objects and refs) and runs what that repository's config and hooks name. Protected paths
(security.protect) keep the top repository's hooks and config read-only, but a sandbox could still plant
`src/.git`, rename an old directory into place as one, rewrite a submodule's `.git` file, write
`.git/commondir`, or a submodule's config and hooks: the user's next `git status` there would run its code
on the host.

So once the sandbox is gone the launcher walks those directories and moves aside (NAME ->
NAME.rootsand-quarantine-TIME) every such structure the run made or changed, with one warning each:

- a `.git` (or a bare repository's HEAD) made or changed in the run: for a directory, born in it or changed
  in it (a rename into place changes it) unless it is one that was there at the start (`known`, by inode:
  ordinary git work changes those);
- in a git directory that was there: `commondir`, `config`, `config.worktree`, a rebase or sequencer state,
  and `hooks` (whole, when it changed), each when made or changed in the run or when it is a link;
  submodules' git directories below `modules/` (any depth) and linked worktrees', the same way.

Times are the kernel's: birth time (statx) and change time, which no process can set back. No link is
followed; what cannot be checked (an unreadable directory, the entry budget spent) is said, never skipped
in silence. A best effort against git's many ways, not a proof: README, "Sandboxing code you did not write".
"""

import os
import stat
import time

QUARANTINE = ".rootsand-quarantine"
GIT_FILES = ("commondir", "config", "config.worktree")  # where git takes what it runs
GIT_STATE = ("rebase-merge", "rebase-apply", "sequencer")  # what `git rebase --continue` would run
MAX_ENTRIES = 500_000
MAX_WARNINGS = 20


class Audit:
    def __init__(self, since: float, skip=frozenset(), known=frozenset(), names=frozenset()):
        self.since = since
        # protected names (.envrc, .vscode, ...): made or changed in the run at any depth, moved aside too
        self.names = set(names) - {".git"}
        self.skip = set(skip)  # mount points of protected paths: rootsand's own
        self.known = {tuple(k) for k in known}  # (dev, ino) of git directories there at the start
        self.budget = MAX_ENTRIES
        self.warnings: list[str] = []
        self.moved = 0
        self.unsaid = 0  # "could not check" lines left out past the first ones
        self.tops: list[str] = []
        self.stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(since))
        self.restore: list[tuple[int, int]] = []  # (O_PATH fd, mode) of directories opened up for the walk

    # -- what counts as made in the run -------------------------------------------------------------

    def born(self, dir_fd: int, name: str) -> bool:
        from rootsand.linux import libc

        try:
            when = libc.birth_time(dir_fd, name)
        except OSError:
            return False
        return when is not None and when >= self.since

    def changed(self, dir_fd: int, name: str, st: os.stat_result, known_ok: bool = False) -> bool:
        """Made or changed in the run. A directory there at the start whose inode is known may have
        changed (git work inside it); any other directory changed in the run was renamed into place or
        filled by the sandbox."""
        if stat.S_ISLNK(st.st_mode) or self.born(dir_fd, name):
            return True
        if st.st_ctime < self.since:
            return False
        return not (known_ok and (st.st_dev, st.st_ino) in self.known)

    # -- the walk -----------------------------------------------------------------------------------

    def run(self, tops: list[str]) -> list[str]:
        self.tops = list(tops)
        try:
            for top in tops:
                try:
                    fd = _open_dir(top)
                except (FileNotFoundError, NotADirectoryError):
                    continue  # a bind that did not happen (its error was said)
                except OSError as e:
                    from rootsand.linux.libc import reason

                    self.say(f"could not check {top} for planted git repositories: {reason(e)}")
                    continue
                self.walk(fd, top)
        finally:
            self.put_modes_back()
        if self.moved > MAX_WARNINGS:
            self.warnings.append(f"... and {self.moved - MAX_WARNINGS} more moved aside the same way")
        if self.unsaid:
            self.warnings.append(f"... and {self.unsaid} more directories that could not be checked")
        return self.warnings

    def put_modes_back(self) -> None:
        """The modes of the directories opened up for the walk, as they were."""
        for ref, mode in reversed(self.restore):
            try:
                os.chmod(f"/proc/self/fd/{ref}", mode)
            finally:
                os.close(ref)
        self.restore.clear()

    def walk(self, fd: int, path: str) -> None:
        """Every directory below `path` (fd), depth first; only `.git` entries are stat()ed (the others'
        types come with the listing)."""
        stack = [(fd, path)]
        try:
            while stack:
                fd, path = stack.pop()
                try:
                    entries = self.list(fd, path)
                    if entries is None:
                        continue
                    if "HEAD" in entries and ({"objects", "refs"} <= set(entries) or "commondir" in entries) \
                            and path not in self.skip:
                        self.bare(fd, path)  # git takes this directory itself for a repository (its objects
                        # and refs may be in the directory its commondir names)
                    for name in sorted(entries):
                        where = os.path.join(path, name)
                        if where in self.skip:  # (what this check moved aside is in it)
                            continue
                        if name in self.names:
                            self.protected_name(fd, path, name)
                            continue
                        if name == ".git":
                            try:
                                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                            except OSError:
                                continue
                            if self.changed(fd, name, st, known_ok=True):
                                self.move(fd, path, name)
                            elif stat.S_ISDIR(st.st_mode):
                                self.git_dir(fd, path, name)
                        elif entries[name]:
                            try:
                                stack.append((self.open_own(name, fd), where))
                            except FileNotFoundError:
                                continue  # moved aside by this check meanwhile (a bare repository's hooks)
                            except OSError as e:
                                self.say(f"could not check {where} for planted git repositories: {e.strerror}: "
                                         "do not run git below it before you have looked")
                finally:
                    os.close(fd)
        finally:
            for fd, _ in stack:
                os.close(fd)

    def protected_name(self, fd: int, path: str, name: str) -> None:
        """A protected name below the top (`sub/.envrc`, `pkg/.vscode`): moved aside when it, or anything
        in it, was made or changed in the run."""
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            return
        changed = st.st_ctime >= self.since or self.born(fd, name)  # (a link of the user's is no plant)
        if not changed and stat.S_ISDIR(st.st_mode):
            try:
                inner = _open_dir(name, fd)
            except OSError:
                changed = True  # what cannot be looked at is not left where a tool would read it
            else:
                try:
                    changed = self.changed_below(inner)
                finally:
                    os.close(inner)
        if changed:
            self.move(fd, path, name, what="direnv and editors do not run what it names")

    def changed_below(self, fd: int) -> bool:
        """Anything below the directory `fd` made or changed in the run; more than 16 levels or 10,000 entries
        count as changed (what is not looked at is not trusted)."""
        stack, seen = [(fd, 0)], 0
        opened = []
        try:
            while stack:
                top, level = stack.pop()
                with os.scandir(top) as it:
                    for entry in it:
                        seen += 1
                        st = entry.stat(follow_symlinks=False)
                        if seen > 10_000 or st.st_ctime >= self.since or self.born(top, entry.name):
                            return True
                        if entry.is_dir(follow_symlinks=False):
                            if level >= 16:
                                return True
                            child = _open_dir(entry.name, top)
                            opened.append(child)
                            stack.append((child, level + 1))
        except OSError:
            return True
        finally:
            for child in opened:
                os.close(child)
        return False

    def open_own(self, name: str, parent_fd: int) -> int:
        """A directory of the walk; one of the user's that the sandbox made unreadable (git needs only to
        pass through it) is opened up for the check and its mode put back after."""
        try:
            return _open_dir(name, parent_fd)
        except PermissionError:
            ref = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
            st = os.fstat(ref)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                os.close(ref)
                raise
            os.chmod(f"/proc/self/fd/{ref}", stat.S_IMODE(st.st_mode) | 0o700)
            self.restore.append((ref, stat.S_IMODE(st.st_mode)))
            return _open_dir(name, parent_fd)

    def list(self, fd: int, path: str) -> dict[str, bool] | None:
        """The directory's entries (name -> is a directory, not a link), counted against the budget."""
        if self.budget <= 0:
            return None
        try:
            with os.scandir(fd) as it:
                entries = {}
                for entry in it:
                    try:
                        entries[entry.name] = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        entries[entry.name] = False
                    self.budget -= 1
                    if self.budget <= 0:
                        break
        except OSError as e:
            self.say(f"could not check {path} for planted git repositories: {e.strerror}: do not run git below it "
                     "before you have looked")
            return None
        if self.budget <= 0:
            self.say(f"stopped checking for planted git repositories after {MAX_ENTRIES} entries (at {path}): not all "
                     f"of {', '.join(self.tops)} was checked: do not run git anywhere in it before you have looked")
            return None
        return entries

    def bare(self, fd: int, path: str) -> None:
        """A directory git uses as a repository by itself: HEAD moved aside when it or the directory (renamed
        into place, or filled) changed in the run, or when its config or commondir did; else what in it
        makes git run something is checked as in a .git directory (a bare repository's hooks run on push)."""
        parent, name = os.path.split(path)
        changed = False
        for entry in ("HEAD", "config", "commondir"):
            try:
                changed |= self.changed(fd, entry, os.stat(entry, dir_fd=fd, follow_symlinks=False))
            except OSError:
                pass
        try:
            changed |= os.fstat(fd).st_ctime >= self.since
        except OSError:
            pass
        if changed:
            self.move(fd, path, "HEAD")
        else:
            names = self.list(fd, path)
            if names is not None:
                self.contents(fd, path, names, 0)

    def git_dir(self, parent_fd: int, parent: str, name: str, depth: int = 0) -> None:
        """A git directory that was there at the start: what in it would make git run something."""
        path = os.path.join(parent, name)
        try:
            fd = _open_dir(name, parent_fd)
        except OSError as e:
            self.say(f"could not check {path}: {e.strerror}")
            return
        try:
            names = self.list(fd, path)
            if names is not None:
                self.contents(fd, path, names, depth)
        finally:
            os.close(fd)

    def contents(self, fd: int, path: str, names, depth: int) -> None:
        """In a git directory (fd): config, commondir, a rebase state and hooks made or changed in the run
        moved aside; submodules' and worktrees' git directories the same way."""
        kept = self.move_changed(fd, path, set(names) & set(GIT_FILES + GIT_STATE + ("hooks",)))
        if "hooks" in kept and stat.S_ISDIR(kept["hooks"].st_mode):
            self.hooks(fd, path)
        for sub in ("modules", "worktrees"):
            if sub in names and depth < 16:
                self.git_dirs_below(fd, path, sub, depth)

    def hooks(self, git_fd: int, git_path: str) -> None:
        path = os.path.join(git_path, "hooks")
        try:
            fd = _open_dir("hooks", git_fd)
        except OSError:
            self.move(git_fd, git_path, "hooks")  # what git could use and we cannot check
            return
        try:
            self.move_changed(fd, path, self.list(fd, path) or ())
        finally:
            os.close(fd)

    def move_changed(self, fd: int, path: str, names) -> dict[str, os.stat_result]:
        """Move aside each of `names` (in fd) made or changed in the run; the others, with their stat."""
        kept = {}
        for entry in sorted(names):
            if os.path.join(path, entry) in self.skip:
                continue
            try:
                st = os.stat(entry, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if self.changed(fd, entry, st):
                self.move(fd, path, entry)
            else:
                kept[entry] = st
        return kept

    def git_dirs_below(self, git_fd: int, git_path: str, sub: str, depth: int) -> None:
        """modules/ and worktrees/: git directories at any depth (a submodule named vendor/lib has its
        own in modules/vendor/lib); one changed in the run, or a link, is moved aside whole."""
        stack = [(sub, git_fd, git_path)]
        opened = []
        try:
            while stack:
                name, parent_fd, parent = stack.pop()
                path = os.path.join(parent, name)
                try:
                    st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISDIR(st.st_mode):
                    if stat.S_ISLNK(st.st_mode):
                        self.move(parent_fd, parent, name)
                    continue
                try:
                    fd = _open_dir(name, parent_fd)
                except OSError:
                    self.move(parent_fd, parent, name)
                    continue
                opened.append(fd)
                names = set(self.list(fd, path) or ())
                if names & {"HEAD", "config", "commondir", "gitdir"}:  # a git directory
                    if self.changed(parent_fd, name, st, known_ok=True):
                        self.move(parent_fd, parent, name)
                    else:
                        self.git_dir(parent_fd, parent, name, depth + 1)
                elif len(opened) < 10_000:
                    stack += [(entry, fd, path) for entry in sorted(names)]
        finally:
            for fd in opened:
                os.close(fd)

    # -- moving aside ---------------------------------------------------------------------------------

    def move(self, dir_fd: int, path: str, name: str, what: str = "git does not run what it names") -> None:
        where = os.path.join(path, name)
        if where in self.skip:
            return
        try:
            aside = aside_name(dir_fd, name, self.stamp)
            os.rename(name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            self.skip.add(os.path.join(path, aside))
            self.moved += 1
            if self.moved <= MAX_WARNINGS:
                self.say(f"{where} was made or changed by the sandbox: renamed to {aside}, so {what} "
                         "(rename it back if you trust it)")
            return
        except OSError as e:
            problem = e.strerror or str(e)
        self.say(f"{where} was made or changed by the sandbox and could not be moved aside ({problem}): do not run "
                 "git there before you have looked")

    def say(self, line: str) -> None:
        from rootsand.errors import printable

        if len(self.warnings) >= 2 * MAX_WARNINGS and "could not check" in line:
            self.unsaid += 1  # (a walk over much of the host finds many; the first ones say what to do)
            return
        self.warnings.append(printable(line))


def aside_name(dir_fd: int, name: str, stamp: str) -> str:
    """A free name to move `name` aside to: NAME.rootsand-quarantine-STAMP, or, when a sandbox has taken
    that one in advance (the stamp is predictable), the same with random letters added."""
    import secrets

    for suffix in ("", *(f"-{secrets.token_hex(4)}" for _ in range(3))):
        aside = f"{name}{QUARANTINE}-{stamp}{suffix}"
        if len(aside.encode()) > 255:
            raise OSError(36, "its name is too long to add a suffix")
        try:
            os.stat(aside, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return aside
    raise OSError(17, f"{name}{QUARANTINE}-{stamp} and others exist")


def audit(tops: list[str], since: float, skip=frozenset(), known=frozenset(), names=frozenset()) -> list[str]:
    """Check the directories `tops` for git changes made after `since` (seconds since the epoch): the
    warnings to say. `skip`: mount points of protected paths; `known`: (dev, ino) of git directories that
    were there at the start. Never raises for what it finds."""
    try:
        return Audit(since, skip, known, names).run(tops)
    except Exception as e:  # noqa: BLE001 - a check that fails must say so, never cost the sandbox's status
        return [f"the check for planted git repositories failed ({type(e).__name__}: {e}): do not run git in "
                f"{', '.join(tops)} before you have looked"]


def check_git_dir(path: str, since: float) -> list[str]:
    """A git directory that was there at the start (`path`, its parent opened without following links):
    move aside what in it would make git run something (config, hooks, commondir, a rebase state, the
    submodules') made or changed after `since`; the warnings."""
    audit = Audit(since)
    parent, name = os.path.split(path)
    try:
        fd = _open_dir(parent)
    except OSError as e:
        from rootsand.linux.libc import reason

        return [f"could not check {path}: {reason(e)}: do not run git there before you have looked"]
    try:
        audit.git_dir(fd, parent, name)
    except Exception as e:  # noqa: BLE001 - a check that fails must say so
        audit.say(f"the check of {path} failed ({type(e).__name__}: {e}): do not run git there before you have looked")
    finally:
        audit.put_modes_back()
        os.close(fd)
    return audit.warnings


def known_git_dirs(tops: list[str]) -> list[list[int]]:
    """(dev, ino) of the top git directories of `tops` and of the submodules' and worktrees' git
    directories inside them, before the sandbox runs (small: no walk of the project)."""
    found = []
    for top in tops:
        git = os.path.join(top, ".git")
        try:
            st = os.lstat(git)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        found.append([st.st_dev, st.st_ino])
        for sub in ("modules", "worktrees"):
            for root, dirs, files in os.walk(os.path.join(git, sub)):
                names = set(dirs) | set(files)
                if names & {"HEAD", "config", "commondir", "gitdir"}:
                    st = os.lstat(root)
                    found.append([st.st_dev, st.st_ino])
                    dirs[:] = [d for d in dirs if d == "modules"]  # nested submodules
                if len(found) > 10_000:
                    return found
    return found


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    if dir_fd is None:
        from rootsand.guard import hostpaths

        return hostpaths.open_nofollow(path, os.O_RDONLY | os.O_DIRECTORY)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
