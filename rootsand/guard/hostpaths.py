"""Host paths that a sandbox may have tampered with: the current directory, mount sources, the status file.

Every directory a sandbox can write (the current directory, above all) may hold links that an earlier
sandbox planted there for the next run to follow. The rules, applied in the launcher before anything runs:

A link is trusted when no sandbox can have made it: it is owned by root and rootsand does not run as
root (a sandbox's ids are the user's own and its subordinate ids; run by root, root's too). Every other
link may have been planted, by this profile's sandboxes or another's:

- The current directory: the one the user is in (getcwd). When $PWD reached it through an untrusted link
  and it is in a home directory, the run is refused: a planted `build -> ~`, `cfg -> ~/.config` or
  `b -> ~/bin` must never become writable. A symlinked project directory elsewhere (`~/src -> /data/src`)
  works, and one line says which directory is bound.
- A mount source (and --rootfs, overlay layers, the status file's directory): links are resolved once,
  here. An untrusted link is refused when it lies inside a directory this sandbox can write, or when it
  leads into a home directory; the error names the target, which the user can name instead.
- In the sandbox, the resolved paths are opened with RESOLVE_NO_SYMLINKS: a link swapped in between the
  check and the open is an error, never followed.
"""

import errno
import os
import pwd
import stat

from rootsand.errors import RootsandError

MAX_LINKS = 40


def home_dirs(env: dict[str, str], uid: int) -> tuple[str, ...]:
    """The user's home directories as real paths: $HOME and the passwd entry's, which may differ (or one be
    unset). Both are hidden and protected; "/" never counts as a home."""
    candidates = [env.get("HOME", "")]
    try:
        candidates.append(pwd.getpwuid(uid).pw_dir)
    except KeyError:
        pass
    homes = []
    for path in candidates:
        if path and os.path.isabs(path):
            real = os.path.realpath(path)
            if real != "/" and real not in homes:
                homes.append(real)
    return tuple(homes)


def real_path(path: str) -> str:
    """os.path.realpath, which raises OSError when a link is swapped for a directory while it looks (a
    sandbox can do it in a loop): tried again, then one error instead of a traceback."""
    for _ in range(3):
        try:
            return os.path.realpath(path)
        except OSError:
            continue
    raise RootsandError(f"{path} changed while it was being looked at", hint="another sandbox may be changing that directory")


def is_below(path: str, top: str) -> bool:
    """True when `path` is `top` or inside it (both normalised absolute paths)."""
    return path == top or path.startswith(top.rstrip("/") + "/")


def trusted(st: os.stat_result) -> bool:
    """A link no sandbox can have made: root's, when rootsand does not run as root."""
    return st.st_uid == 0 and os.getuid() != 0


def home_reason(path: str, homes: tuple[str, ...]) -> str | None:
    """Why `path` is part of the user's home, or None."""
    for home in homes:
        if path == home:
            return "your home directory"
        if is_below(path, home):
            rest = path[len(home) + 1:].split("/")[0]
            return f"it is inside {home}/{rest}" if rest.startswith(".") else f"it is inside your home {home}"
    return None


def current_directory(env: dict[str, str], homes: tuple[str, ...]) -> tuple[str, list[str]]:
    """The physical current directory and the notes to say about it; refuses one reached through a link
    that would expose the home directory."""
    try:
        physical = os.getcwd()
    except FileNotFoundError:
        raise RootsandError("the current directory no longer exists", hint="cd somewhere else or pass --chdir") from None
    logical = os.path.normpath(env.get("PWD", "")) if os.path.isabs(env.get("PWD", "")) else ""
    via_link = False
    if logical and logical != physical and logical not in _home_names(env):  # `cd ~` names the home itself
        try:
            via_link = os.path.samefile(logical, physical) and _has_user_link(logical)
        except OSError:
            via_link = False  # a stale $PWD: the user is where getcwd says
    notes = []
    reason = home_reason(physical, homes)  # (a directory holding a home is replaced by an empty one)
    if via_link and reason:
        raise RootsandError(f"the current directory {logical} leads through a symbolic link to {physical} "
                            f"({reason}): refusing to bind it, since a sandbox may have planted the link",
                            hint=f"cd {physical} yourself if you mean it, or run from a project directory")
    if via_link:
        notes.append(f"the current directory in the sandbox is {physical} (where {logical} leads)")
    return physical, notes


def _home_names(env: dict[str, str]) -> set[str]:
    names = {os.path.normpath(env["HOME"])} if os.path.isabs(env.get("HOME", "")) else set()
    try:
        names.add(os.path.normpath(pwd.getpwuid(os.getuid()).pw_dir))
    except KeyError:
        pass
    return names


def _has_user_link(path: str) -> bool:
    """True when a component of `path` is a link a sandbox could have made."""
    done = "/"
    for part in [p for p in path.split("/") if p not in ("", ".", "..")]:
        done = os.path.join(done, part)
        try:
            st = os.lstat(done)
        except OSError:
            return False
        if stat.S_ISLNK(st.st_mode) and not trusted(st):
            return True
    return False


def resolve_source(path: str, writable: list[str], what: str, homes: tuple[str, ...] = ()) -> str:
    """`path` with its links resolved, refusing a link a sandbox could have planted (see the module's rules).

    A missing component ends the walk: the rest is returned as written, and the sandbox reports it missing
    (or skips an optional mount).
    """
    todo = [p for p in path.split("/") if p not in ("", ".")]
    done = "/"
    links = 0
    planted = None  # the first link followed that a sandbox could have made
    while todo:
        part = todo.pop(0)
        if part == "..":
            done = os.path.dirname(done)
            continue
        candidate = os.path.join(done, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            done = os.path.join(candidate, *todo)  # the rest as written: the sandbox reports it missing
            break
        except OSError as e:
            raise RootsandError(f"{what}: cannot look at {candidate}: {e.strerror}") from None
        if not stat.S_ISLNK(st.st_mode):
            done = candidate
            continue
        links += 1
        if links > MAX_LINKS:
            raise RootsandError(f"{what}: {path}: too many levels of symbolic links")
        try:
            target = os.readlink(candidate)
        except OSError:  # no link any more: swapped since the lstat
            raise RootsandError(f"{what}: {candidate} changed while it was being looked at",
                                hint="another sandbox may be changing that directory") from None
        if not trusted(st) and candidate not in _home_names(os.environ):  # (its parent is no sandbox's to write)
            top = next((t for t in writable if is_below(done, t)), None)
            if top is not None:
                leads = real_path(candidate)  # for the message only: the decision is made already
                raise RootsandError(f"{what}: {candidate} is a symbolic link (to {leads}) inside {top}, which the "
                                    "sandbox can write: it is not followed",
                                    hint=f"name its target {leads} instead, if that is what you mean")
            planted = planted or candidate
        if target.startswith("/"):
            done = "/"
        todo = [p for p in target.split("/") if p not in ("", ".")] + todo
    # Where the walk ended, judged on what was walked (a second lookup of the link could see something else:
    # a sandbox swapping it with a directory in a loop)
    if planted and home_reason(done, homes):
        raise RootsandError(f"{what}: {planted} is a symbolic link into your home directory (to {done}), which a "
                            "sandbox may have planted: it is not followed",
                            hint=f"name its target {done} instead, if that is what you mean")
    return done


def open_nofollow(path: str, flags: int, mode: int = 0o644) -> int:
    """open() that follows no link in any component: a link planted since the check is an error (ELOOP)."""
    from rootsand.linux import libc

    try:
        # openat2 refuses a mode without O_CREAT
        return libc.openat2(libc.AT_FDCWD, path, flags, libc.RESOLVE_NO_SYMLINKS, mode if flags & os.O_CREAT else 0)
    except OSError as e:
        if e.errno != errno.ENOSYS:
            raise
    # No openat2 (Linux before 5.6, or a seccomp filter such as an outer sandbox's): one component at a time.
    parts = [p for p in path.split("/") if p]
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            if part == "..":
                raise OSError(errno.EINVAL, f"{path}: '..' in a resolved path")
            parent, fd = fd, os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(parent)
        last = parts[-1] if parts else "."
        opened = os.open(last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
        if stat.S_ISLNK(os.fstat(opened).st_mode):  # O_PATH | O_NOFOLLOW opens a link itself
            os.close(opened)
            raise OSError(errno.ELOOP, f"{path}: a symbolic link is in the way")
        return opened
    except NotADirectoryError:
        raise OSError(errno.ELOOP, f"{path}: a symbolic link is in the way") from None
    finally:
        os.close(fd)
