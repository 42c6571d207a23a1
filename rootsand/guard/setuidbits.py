"""Where setuid bits are allowed (fakeroot), what a sandbox leaves that would run as the user: cleared
once the sandbox is gone (by its launcher, or by the next sweep, guard/leftovers.py, when it was killed)."""

import os
import stat

from rootsand.errors import warn
from rootsand.guard import hostpaths


def clear(tops: list[str], ids, userns_fd: int | None = None) -> None:
    """A sandbox could leave a setuid or setgid program that is the user's own on the host, for any local
    user to run as them: clear those bits on the user's files below `tops`, what it could write (files of
    subordinate ids keep theirs, but lose a setgid bit of the user's group). The walk runs in a user
    namespace with the sandbox's map (`ids`, its IdPlan), with its capabilities there, so no directory the
    sandbox locked (mode 0711, owned by a subordinate id) hides a file from it. What it could not check
    is said. `userns_fd`: the sandbox's own user namespace, held by its launcher (else a new one is made)."""
    from rootsand.guard.subids import as_sandbox_root

    def walk(out) -> None:
        cleared, unchecked = own_files(tops, os.getuid(), os.getgid())
        out.writelines([f"+{path}\0" for path in cleared] + [f"!{what}\0" for what in unchecked])

    lines, problem = as_sandbox_root(walk, ids, userns_fd)
    cleared = [line[1:] for line in lines if line.startswith("+")]
    unchecked = [line[1:] for line in lines if line.startswith("!")]
    if cleared:
        warn(f"cleared the setuid/setgid bits of {len(cleared)} file(s) of yours the sandbox left (another "
             f"user could have run them as you): {', '.join(cleared[:5])}" + (" ..." if len(cleared) > 5 else ""))
    if problem or unchecked:
        where = problem or f"{', '.join(unchecked[:3])}" + (" ..." if len(unchecked) > 3 else "")
        warn(f"could not check all the sandbox could write for setuid/setgid files of yours ({where}): run "
             f"'find {' '.join(tops)} -perm /6000 -user {os.getuid()}' and look before another user can")


def own_files(tops: list[str], own_uid: int, own_gid: int) -> tuple[list[str], list[str]]:
    """Clear S_ISUID/S_ISGID on the regular files of `own_uid`, and S_ISGID on those of group `own_gid`
    whoever owns them, at or below `tops` (a top may be a bound file): the paths cleared, and what could
    not be checked (with why). The walk goes from directory fd to directory fd and follows no link, and
    stays on each top's file system (a host mount below it, /proc in a chroot, is not the sandbox's to
    write). Depth first, holding the fds and names of the directories on the current path only: a path is
    made only to be reported, so a deep tree costs memory in its depth, not in its depth squared."""

    def listing(fd: int, name: str | None) -> list[str]:
        """The names in directory `fd`, which is `name` in the current directory (None: the top)."""
        try:
            with os.scandir(fd) as entries:
                return [entry.name for entry in entries]
        except OSError as e:
            unchecked.append(f"{where(name)}: {e.strerror}")
            return []

    def where(name: str | None = None) -> str:
        return os.path.join(top, *[level[1] for level in stack[1:]], *([name] if name else []))

    def check(fd: int, st: os.stat_result, name: str | None) -> None:
        clear = ((st.st_mode & (stat.S_ISUID | stat.S_ISGID) if st.st_uid == own_uid else 0)
                 | (st.st_mode & stat.S_ISGID if st.st_gid == own_gid else 0))
        if stat.S_ISREG(st.st_mode) and clear:
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) & ~clear)
            cleared.append(where(name))

    cleared, unchecked = [], []
    for top in dict.fromkeys(tops):
        stack = []
        try:  # no link in any component: the sandbox may have replaced a directory on the way with one
            ref = hostpaths.open_nofollow(top, os.O_PATH)
        except FileNotFoundError:
            continue  # not there (an optional bind): nothing to check
        except OSError as e:
            from rootsand.linux.libc import reason

            unchecked.append(f"{top}: {reason(e)}")
            continue
        try:
            st = os.fstat(ref)
            if not stat.S_ISDIR(st.st_mode):
                check(ref, st, None)
                continue
            device = st.st_dev
            fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=ref)
        except OSError as e:
            unchecked.append(f"{top}: {e.strerror}")
            continue
        finally:
            os.close(ref)
        stack.append((fd, "", iter(listing(fd, None))))
        while stack:
            fd, _, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            try:
                child = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                continue  # gone since the listing
            except OSError as e:
                unchecked.append(f"{where(name)}: {e.strerror}")
                continue
            try:
                st = os.fstat(child)
                if not stat.S_ISDIR(st.st_mode):
                    check(child, st, name)
                elif st.st_dev == device:
                    sub = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=child)
                    stack.append((sub, name, iter(listing(sub, name))))
            except OSError as e:
                unchecked.append(f"{where(name)}: {e.strerror}")
            finally:
                os.close(child)
    return cleared, unchecked
