"""After the sandbox: what it did to git repositories in the user's directories it could write.

git finds a repository in any directory, by a `.git` directory or a `.git` file naming one, and runs what
that repository's config and hooks name. Protected paths (security.protect) keep the top repository's
hooks and config read-only, but a sandbox could still plant `src/.git`, rewrite a submodule's `.git` file,
write `.git/commondir` (which sends git to another directory's config and hooks), or a submodule's config
and hooks under `.git/modules/`: the user's next `git status` there would run its code on the host.

So once the sandbox is gone the launcher walks those directories and renames what the sandbox made or
changed out of git's way (NAME -> NAME.rootsand-quarantine), with one warning each: a `.git` made or
changed in the run, and in the repositories that were there before, `commondir`, `config`,
`config.worktree` and hooks made or changed in the run. Times are the kernel's (birth time where the file
system records it, else the change time, which no process can set back). No link is followed.
"""

import os
import stat

QUARANTINE = ".rootsand-quarantine"
DANGEROUS = ("commondir", "config", "config.worktree")  # in a git directory: where git takes what it runs
MAX_ENTRIES = 200_000


def audit(tops: list[str], since: float, skip: set[str] = frozenset()) -> list[str]:
    """Check the directories `tops` for git changes made after `since` (seconds since the epoch); the
    warnings to say. `skip`: mount points of protected paths (rootsand's own, this sandbox's or a live
    one's). Never fatal: a walk that meets an error skips that directory."""
    warnings: list[str] = []
    budget = [MAX_ENTRIES]
    for top in tops:
        try:
            fd = _open_dir(top)
        except OSError:
            continue
        _walk(fd, top, since, warnings, budget, skip)
    if budget[0] <= 0:
        warnings.append(f"stopped checking for planted git repositories after {MAX_ENTRIES} entries")
    return warnings


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    if dir_fd is None:
        from rootsand import hostpaths

        return hostpaths.open_nofollow(path, os.O_RDONLY | os.O_DIRECTORY)
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _made_since(dir_fd: int, name: str, st: os.stat_result, since: float) -> bool:
    """Made in the run; for a non-directory also changed in it (a directory's change time moves with
    every file added to it, which is no sign of danger)."""
    from rootsand import libc

    try:
        born = libc.birth_time(dir_fd, name)
    except OSError:
        born = None
    if born is not None and born >= since:
        return True
    return not stat.S_ISDIR(st.st_mode) and st.st_ctime >= since


def _walk(fd: int, path: str, since: float, warnings: list[str], budget: list[int], skip) -> None:
    stack = [(fd, path)]
    while stack:
        fd, path = stack.pop()
        try:
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError:
            os.close(fd)
            continue
        try:
            budget[0] -= len(entries)
            for entry in entries:
                if entry.name == ".git":
                    if os.path.join(path, ".git") in skip:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if _made_since(fd, ".git", st, since):
                        _quarantine(fd, path, ".git", warnings)
                    elif stat.S_ISDIR(st.st_mode):
                        _check_git_dir(fd, os.path.join(path, ".git"), since, warnings, skip)
                elif budget[0] > 0 and entry.is_dir(follow_symlinks=False):  # the directory's d_type: no stat
                    try:
                        stack.append((_open_dir(entry.name, fd), os.path.join(path, entry.name)))
                    except OSError:
                        pass
        finally:
            os.close(fd)


def _check_git_dir(parent_fd: int, path: str, since: float, warnings: list[str], skip, depth: int = 0) -> None:
    """A git directory that was there before: what in it would make git run something."""
    try:
        fd = _open_dir(os.path.basename(path), parent_fd)
    except OSError:
        return
    try:
        for name in DANGEROUS:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            if _made_since(fd, name, st, since) and os.path.join(path, name) not in skip:
                _quarantine(fd, path, name, warnings)
        try:
            hooks = _open_dir("hooks", fd)
        except OSError:
            hooks = None
        if hooks is not None:
            try:
                for entry in list(os.scandir(hooks)):
                    if entry.name.endswith(QUARANTINE) or entry.name.endswith(".sample"):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if _made_since(hooks, entry.name, st, since):
                        _quarantine(hooks, os.path.join(path, "hooks"), entry.name, warnings)
            finally:
                os.close(hooks)
        if depth < 8:  # submodules' and linked worktrees' own git directories
            for sub in ("modules", "worktrees"):
                try:
                    sub_fd = _open_dir(sub, fd)
                except OSError:
                    continue
                try:
                    for entry in list(os.scandir(sub_fd)):
                        if entry.is_dir(follow_symlinks=False):
                            _check_git_dir(sub_fd, os.path.join(path, sub, entry.name), since, warnings, skip,
                                           depth + 1)
                finally:
                    os.close(sub_fd)
    finally:
        os.close(fd)


def _quarantine(dir_fd: int, path: str, name: str, warnings: list[str]) -> None:
    target = name + QUARANTINE
    for n in range(100):
        candidate = target if n == 0 else f"{target}-{n}"
        try:
            os.stat(candidate, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            break
    else:
        return
    where = os.path.join(path, name)
    try:
        os.rename(name, candidate, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as e:
        warnings.append(f"{where} was made or changed by the sandbox, and could not be moved aside: {e.strerror}: "
                        "check it before you run git there")
        return
    warnings.append(f"{where} was made or changed by the sandbox: renamed to {candidate}, so git does not run "
                    "what it names (rename it back if you trust it)")
