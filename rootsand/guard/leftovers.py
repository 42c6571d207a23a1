"""What sandboxes leave among the user's files, and what a killed launcher left undone.

Protected paths (security.protect) may need mount points: empty files and directories made in the user's
directories for the run, listed in the sandbox's registry entry before anything is made. They are removed
once no live sandbox covers them (those stay in a ledger): by the launcher at exit, or, when it was killed,
by the next sweep. A lock keeps a sweep from removing one that a sandbox still being set up is about to
cover (its entry names what it covers before it starts).

A killed launcher's entry also says what its exit would have done: clear setuid bits, check the pinned and
absent protected paths and the git repositories. A sweep does that, with the same warnings, and retires the
entry. Sweeps run before a new sandbox starts (claim), by `rootsand cleanup`, and by `rootsand stop NAME`
for that sandbox; reading the registry (ps, inspect, exec, ns) never does.
"""

import fcntl
import os
import stat
import time

from rootsand.linux import procfs
from rootsand.ops import registry

LEDGER = "leftover-mount-points.ledger"  # in the registry's directory; not .json: it is no sandbox entry


def claim(name: str, detached: bool = False) -> str:
    """Take `name` for a new sandbox (registry.claim) once what killed launchers left is done (cleanup): a
    name that a killed launcher's entry holds is free again. Called before the leftover lock is taken: a
    sweep needs it exclusive."""
    from rootsand.errors import RootsandError

    cleanup()
    for _ in range(3):
        path = registry.claim(name, detached)
        if path:
            return path
        retire(registry.entry_path(name))  # killed since, or the lock was busy: again, then give up
    raise RootsandError(f"cannot take the name {name} in {registry.registry_dir()}")


def cleanup(explicit: bool = False) -> list[str]:
    """Do what the user's killed launchers left undone: retire their entries (checks first), remove what
    they half wrote, and (`explicit`: `rootsand cleanup`) the ledger's mount points no sandbox covers any
    more. What was done, one line each; the checks warn. Looks first: nothing is locked or written when
    nothing is stale."""
    directory = registry.registry_dir()
    done = []
    swept = explicit and os.path.lexists(os.path.join(directory, LEDGER))
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if name.endswith(".tmp"):  # NAME.json.PID.tmp: registry.publish was killed between write and rename
            pid = name.rsplit(".", 2)[-2]
            if pid.isdigit() and procfs.start_time(int(pid)) is None:
                registry.forget(path)
                done.append(f"removed {path} (half written by a command that was killed)")
        elif name.endswith(".json"):
            entry = registry.load(path)
            if entry is None or registry.is_live(entry):
                continue
            if _needs_the_lock(entry):
                swept = True
            else:
                done += _retire_alone(path, entry)
    if swept:
        result = sweep()
        if result is None and explicit:
            from rootsand.errors import warn

            warn("a sandbox is being set up: what killed launchers left among your files waits for the next "
                 "'rootsand cleanup'")
        done += result or []
    return done


def retire(path: str) -> list[str] | None:
    """Do what the killed launcher of the entry at `path` left undone, and remove the entry (nothing for a
    live or broken one). What was done; None when that needed the lock and it was busy."""
    entry = registry.load(path)
    if entry is None or registry.is_live(entry):
        return []
    if _needs_the_lock(entry):
        return sweep()  # clears, checks and retires it (every stale one), under the lock
    return _retire_alone(path, entry)


def after_run(entry_path: str, protect: dict | None, setuid_tops: list[str], ids, userns_fd: int | None = None) -> list[str]:
    """What a launcher does once its sandbox is gone, in this order; the warnings to say. Setuid bits set
    inside are cleared before the entry that names them goes (killed during the walk, the next sweep redoes
    it). Protected paths changed or replaced from another namespace while pinned, and those left absent that
    the run made, are moved aside. Git repositories are checked before any mount point is removed (those are
    ours): everything this sandbox could write, whoever else protects it; a second sandbox's mount points only
    while still empty (filled, they are what was planted). Then the mount points made for the run go, unless
    another sandbox uses them; when the lock is busy the entry stays, stale once the launcher exits, for the
    next sweep."""
    warnings = []
    if setuid_tops:
        from rootsand.guard import setuidbits

        setuidbits.clear(setuid_tops, ids, userns_fd)
    if not protect:
        registry.forget(entry_path)
        return warnings
    others = empty_mount_points_of_others(entry_path)
    warnings += check_pinned(protect["pinned"], protect["since"]) + check_absent(protect["absent"], others)
    audit = protect.get("audit")
    if audit:
        from rootsand.guard import gitaudit

        skip = set(protect["covered"]) | others
        warnings += gitaudit.audit(audit["tops"], audit["since"], skip, audit["known"], audit.get("names", ()))
    sweep(entry_path, protect["made"])  # what it removes is ours, said by no one (it warns of what was filled)
    return warnings


def _needs_the_lock(entry: dict) -> bool:
    """True when the entry made mount points or left checks: a sweep under the lock retires it."""
    return bool(_made(entry) or _audit(entry) or _pinned(entry) or (entry.get("protect") or {}).get("absent"))


def _retire_alone(path: str, entry: dict) -> list[str]:
    _clear_setuid_bits(entry)
    _remove_staging(entry)
    registry.forget(path)
    return [_retired(entry)]


def _retired(entry: dict) -> str:
    return f"removed {entry.get('name')}'s entry (its launcher was killed)"


def _clear_setuid_bits(entry: dict) -> None:
    """What a launcher clears at exit where setuid bits are allowed (the user's own setuid and setgid
    programs in what the sandbox could write), for one that was killed first."""
    record = entry.get("setuid")
    if not isinstance(record, dict) or not isinstance(record.get("tops"), list):
        return
    from rootsand.config import idmap
    from rootsand.errors import RootsandError, warn
    from rootsand.guard import setuidbits

    try:
        setuidbits.clear([str(top) for top in record["tops"]], idmap.IdPlan.from_json(record["ids"]))
    except (RootsandError, OSError, ValueError, KeyError, TypeError) as e:
        warn(f"cannot check what the killed sandbox {entry.get('name')} left for setuid bits: {e}")


def _remove_staging(entry: dict) -> None:
    """A killed launcher's staging directory (guard/handover.py), removed with what it holds, and said."""
    record = entry.get("handover")
    staging = record.get("staging") if isinstance(record, dict) else None
    if not isinstance(staging, str):
        return
    from rootsand.config import idmap, plan
    from rootsand.errors import warn
    from rootsand.guard import handover

    if not (os.path.isabs(staging) and os.path.basename(staging).startswith(plan.STAGING_PREFIX)):
        return  # not a path this launcher could have made
    try:
        lines = handover.remove_staging(staging, str(record.get("mount_point", "")),
                                        idmap.IdPlan.from_json(record["ids"]))
    except (OSError, ValueError, KeyError, TypeError) as e:
        lines = [f"cannot remove {staging}, the staging directory of the killed sandbox {entry.get('name')}: {e}"]
    for line in lines:
        warn(line)


def empty_mount_points_of_others(own_entry: str) -> set[str]:
    """The placeholders that the live sandboxes but the one at `own_entry` made and that are still empty:
    their mount points, which an after-run check leaves alone. Filled, they are what a sandbox planted."""
    made = []
    directory = registry.registry_dir()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".json") and path != own_entry:
            entry = registry.load(path)
            if entry and registry.is_live(entry):
                made += [str(item[0]) for item in _made(entry) if isinstance(item, list) and item]
    return {path for path in made if _is_empty(path)}


def _is_empty(path: str) -> bool:
    """An empty directory or an empty regular file, not followed if a link."""
    try:
        st = os.lstat(path)
        if stat.S_ISREG(st.st_mode):
            return st.st_size == 0
        return stat.S_ISDIR(st.st_mode) and not os.listdir(path)
    except OSError:
        return False


def _made(entry: dict) -> list:
    protect = entry.get("protect")
    return protect.get("made", []) if isinstance(protect, dict) else []


def _pinned(entry: dict) -> list:
    protect = entry.get("protect")
    pinned = protect.get("pinned", []) if isinstance(protect, dict) else []
    return pinned if isinstance(pinned, list) else []


def _audit(entry: dict) -> dict | None:
    protect = entry.get("protect")
    audit = protect.get("audit") if isinstance(protect, dict) else None
    return audit if isinstance(audit, dict) and isinstance(audit.get("tops"), list) else None


def protect_lock(exclusive: bool, wait: float = 2.0) -> int | None:
    """An fd holding the leftover lock (shared: setting up a sandbox that protects paths; exclusive: a
    sweep), or None when an exclusive one could not be had within `wait` seconds (a sandbox is being set up;
    the next sweep does the work). Closing the fd releases it, also when the process is killed."""
    fd = os.open(registry.registry_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # flock works on directories too
    if not exclusive:
        fcntl.flock(fd, fcntl.LOCK_SH)  # sweeps hold it for a few milliseconds
        return fd
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
            time.sleep(0.01)  # flock has no timeout; setups hold the lock briefly


def sweep(own_entry: str | None = None, made: list | None = None) -> list[str] | None:
    """Remove the mount points in `made` (the ending launcher's, [path, is_dir] pairs, its entry then
    forgotten), in the ledger and in the entries of killed launchers, unless a live sandbox still covers
    them (those stay in the ledger); the killed launchers' entries are checked (setuid bits, pinned and absent
    paths, git) and retired. What was done, one line each (the checks warn); None when the lock was busy:
    then nothing changed, and an ending launcher leaves its entry, which turns stale when it exits, for the
    next sweep."""
    from rootsand.errors import warn

    directory = registry.registry_dir()
    lock = protect_lock(exclusive=True)
    if lock is None:
        return None
    ledger_path = os.path.join(directory, LEDGER)
    done = []
    try:
        todo = [tuple(item) for item in (_load_ledger(ledger_path) + list(made or []))]
        if made:  # in the ledger before our entry, which names them, goes (an interrupted sweep forgets nothing)
            _write_ledger(ledger_path, _unique(todo))
        if own_entry:
            registry.forget(own_entry)
        covered = set()
        stale = []
        for name in os.listdir(directory):
            if not name.endswith(".json"):
                continue
            entry = registry.load(os.path.join(directory, name))
            if entry is None:
                continue
            if registry.is_live(entry):
                protect = entry.get("protect")
                covered |= set(protect.get("covered", [])) if isinstance(protect, dict) else set()
            else:
                _clear_setuid_bits(entry)  # before the entry that says what to clear goes
                _remove_staging(entry)
                todo += [tuple(item) for item in _made(entry)]
                stale.append((os.path.join(directory, name), entry))
        if stale:
            _write_ledger(ledger_path, _unique(todo))
        # Killed before its own checks: what its sandbox did is checked now, and only then is its entry gone
        # (a sweep interrupted meanwhile leaves it for the next one)
        for path, entry in stale:
            protect = entry.get("protect") if isinstance(entry.get("protect"), dict) else {}
            since = protect.get("since") if isinstance(protect.get("since"), (int, float)) else 0
            absent = [p for p in protect.get("absent", []) if isinstance(p, str)] if isinstance(
                protect.get("absent"), list) else []
            others = {p for p in covered | {str(p) for p, _ in todo} if _is_empty(p)}
            for line in check_pinned(_pinned(entry), since) + check_absent(absent, others):
                warn(line)
            audit = _audit(entry)
            if audit:
                from rootsand.guard import gitaudit

                names = [n for n in audit.get("names", []) if isinstance(n, str)] if isinstance(audit.get("names"), list) else []
                for line in gitaudit.audit(audit.get("tops", []), audit.get("since", 0), others, audit.get("known", []),
                                           names):
                    warn(line)
            registry.forget(path)
            done.append(_retired(entry))
        keep = []
        # Deepest first: a second sandbox may have made its own inside a directory the first one made.
        for path, is_dir in sorted(_unique(todo), key=lambda i: -len(i[0])):
            if any(c == path or c.startswith(path.rstrip("/") + "/") for c in covered):
                keep.append([path, is_dir])  # a live sandbox covers it, or something below it
            elif remove_mount_point(path, is_dir):
                done.append(f"removed {path} (an empty mount point made for a sandbox)")
            elif os.path.lexists(path):
                # Made empty and read-only, yet filled: its protection was lifted from outside (see check_pinned)
                warn(quarantine(path, "was made empty and read-only for the run, and something was written there "
                                      "(its protection was lifted from outside the sandbox)"))
        _write_ledger(ledger_path, keep)
    finally:
        os.close(lock)
    return done


def identity(path: str) -> list:
    """[dev, ino, birth time or None, ctime_ns] of `path`, not followed if a link: inode numbers are
    reused at once, birth times tell a new file from the old one."""
    from rootsand.linux import libc

    st = os.lstat(path)
    try:
        born = libc.birth_time(libc.AT_FDCWD, path)
    except OSError:
        born = None
    return [st.st_dev, st.st_ino, born, st.st_ctime_ns]


def check_pinned(pinned: list, since: float = 0) -> list[str]:
    """Warnings for protected paths that are not what was pinned at the start, each moved aside: another
    mount namespace (the host, a second sandbox whose writable directory holds this one's) can write a
    pinned path in place, or unlink the mount point, which detaches the mounts on it everywhere, after which
    the sandbox could make the path anew. Also when another sandbox still protects it: that one pinned what
    it found, the planted file. `since`: when the run started (a directory's entries changed since then
    were changed from outside: inside they are read-only)."""
    warnings = []
    try:
        own = registry.runtime_dir()
    except Exception:  # noqa: BLE001 - no runtime directory: nothing of ours to keep out of the check
        own = None
    for item in pinned:
        if not (isinstance(item, list) and len(item) == 5 and isinstance(item[0], str)):
            continue
        path, *then = item
        if own and (path == own or own.startswith(path.rstrip("/") + "/") or path.startswith(own + "/")):
            continue  # rootsand's own state, which it writes itself (a record made before it was told apart)
        try:
            now = identity(path)
        except OSError:
            continue  # removed meanwhile (a `git clean` on the host): nothing was planted there
        if now[:3] != then[:3]:
            # Also what git (config, remote add, push -u) or an editor on the host does: the same rename over it,
            # which lifts the mount too, after which the sandbox could have written it. Moved, and said so.
            warnings.append(quarantine(path, "was replaced during the run, from outside the sandbox, which lifted "
                                             "its protection (git or an editor on the host replace files so too: "
                                             "if that was you, look and rename it back)"))
        elif os.path.basename(path) == ".git" and stat.S_ISDIR(os.lstat(path).st_mode):
            # all of .git (the agent profile): ordinary git work on the host changes it; only what makes git
            # run something (config, hooks, commondir, ...) changed since the start is moved aside
            from rootsand.guard import gitaudit

            warnings += gitaudit.check_git_dir(path, since or time.time())
        elif now[3] != then[3] or _changed_below(path, since):
            warnings.append(quarantine(path, "was changed during the run, from outside the sandbox, while it was "
                                             "read-only inside (a second sandbox whose writable directory holds it, "
                                             "or you on the host: if that was you, look and rename it back)"))
    return warnings


def _changed_below(path: str, since: float) -> bool:
    """True when an entry below the directory `path` was made or changed at or after `since` (the git check's
    walk: no link followed, what cannot be looked at or more than 10,000 entries count as changed)."""
    if not since:
        return False
    from rootsand.guard import gitaudit, hostpaths

    try:
        fd = hostpaths.open_nofollow(path, os.O_RDONLY | os.O_DIRECTORY)
    except NotADirectoryError:
        return False  # a file: its own change time says it
    except OSError:
        return True
    try:
        return gitaudit.Audit(since).changed_below(fd)
    finally:
        os.close(fd)


def check_absent(absent: list[str], skip=frozenset()) -> list[str]:
    """Protected paths that were absent at the start and left so (no placeholder: security.placeholders =
    false): whatever is there now was made during the run, by the sandbox or from outside. Moved aside,
    but for `skip`: another live sandbox's placeholders, still empty."""
    warnings = []
    for path in absent:
        if os.path.lexists(path) and path not in skip:
            warnings.append(quarantine(path, "was made during the run (a protected path that was not there before: "
                                             "if you made it yourself meanwhile, rename it back)"))
    return warnings


def quarantine(path: str, why: str) -> str:
    """Rename `path` aside (gitaudit.aside_name) so no tool of the user runs it; the warning."""
    from rootsand.errors import printable
    from rootsand.guard import hostpaths
    from rootsand.guard.gitaudit import aside_name

    parent, name = os.path.split(path)
    try:
        parent_fd = hostpaths.open_nofollow(parent, os.O_PATH | os.O_DIRECTORY)
    except OSError as e:
        from rootsand.linux.libc import reason

        return printable(f"{path} {why}, and could not be moved aside ({reason(e)}): look at it before you use it")
    try:
        aside = aside_name(parent_fd, name, time.strftime("%Y%m%d-%H%M%S"))
        os.rename(name, aside, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        return printable(f"{path} {why}: renamed to {aside} (rename it back if you trust it)")
    except OSError as e:
        return printable(f"{path} {why}, and could not be moved aside ({e.strerror}): look at it before you use it")
    finally:
        os.close(parent_fd)


def remove_mount_point(path: str, is_dir: bool) -> bool:
    """Remove an empty directory or an empty regular file made as a mount point; anything else (it was
    filled, replaced, or never made) stays. No link is followed on the way."""
    from rootsand.guard import hostpaths

    parent, name = os.path.split(path)
    try:
        parent_fd = hostpaths.open_nofollow(parent, os.O_PATH | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if is_dir and stat.S_ISDIR(st.st_mode):
            os.rmdir(name, dir_fd=parent_fd)  # fails when not empty
        elif not is_dir and stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(name, dir_fd=parent_fd)
        else:
            return False
        return True
    except OSError:
        return False
    finally:
        os.close(parent_fd)


def _unique(items) -> list:
    """[path, is_dir] pairs, each once."""
    return [list(item) for item in dict.fromkeys((str(p), bool(d)) for p, d in items)]


def _load_ledger(path: str) -> list:
    data = registry.load(path) or {}
    items = data.get("made", [])
    return [item for item in items if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)]


def _write_ledger(path: str, items: list) -> None:
    if items:
        registry.publish(path, {"made": items})
    else:
        registry.forget(path)

