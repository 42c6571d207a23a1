"""rootsand's own state on the host: the private runtime directory and what killed launchers left in it.

The registry of running sandboxes lives here too, and the ledger of the mount points that protected
paths needed (security.protect): empty files and directories made in the user's directories for the run.
They are removed once no live sandbox covers them: by the launcher at exit, or, when it was killed, by the
next command that reads the registry. A lock keeps a sweep from removing one that a sandbox still being
set up is about to cover (its entry names what it covers before it starts).
"""

import fcntl
import json
import os
import stat
import time


def runtime_dir() -> str:
    """A private directory for rootsand's sockets and state: $XDG_RUNTIME_DIR/rootsand, else /tmp/rootsand-UID,
    else a name in /tmp that no other user can know in advance (_shared_or_fallback).

    Each must be ours, mode 0700 and not a link: $XDG_RUNTIME_DIR comes from the environment, and /tmp is
    shared with everyone, so a directory another user made (or a link to one) would hand them our sockets,
    and its entries (pids to signal, plans to act on) would be theirs. Such a directory is only looked at.
    """
    from rootsand.errors import RootsandError

    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base:
        return _shared_or_fallback(uid)
    try:
        st = os.lstat(base)
    except OSError as e:
        raise RootsandError(f"XDG_RUNTIME_DIR={base}: {e.strerror}",
                            hint="unset it, or point it at your own 0700 directory") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise RootsandError(f"XDG_RUNTIME_DIR={base} is not a directory of yours that only you can write",
                            hint="unset it, or point it at your own 0700 directory")
    path = os.path.join(base, "rootsand")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise RootsandError(f"cannot create {path}: {e.strerror}") from None
    if _not_private(path, uid):
        raise RootsandError(f"{path} is not a private directory of yours (owner, mode 0700, not a link)",
                            hint="remove it, or set XDG_RUNTIME_DIR to a directory only you can write")
    return path


def _shared_or_fallback(uid: int) -> str:
    """/tmp/rootsand-UID; when that is no private directory of ours (anyone can take the name in /tmp, and
    no one but root can remove theirs), /tmp/rootsand-UID-NAME, NAME a hash of a key of ours (made once,
    readable by us only) and of the boot: no other user can know it before it exists, and every command of
    ours finds the same one. Not in the home: sockets are made here, and their paths must be short."""
    from rootsand.errors import RootsandError, warn

    # Named by the host's uid for us: inside a user namespace (rootsand unshare, another tool's), uid 0
    # must not take /tmp/rootsand-0, which is real root's.
    shared = f"/tmp/rootsand-{_host_uid(uid)}"
    key_path = _runtime_key_path(uid)
    key = _runtime_key(key_path, uid)
    fallback = _fallback_name(shared, key) if key else None
    if fallback and _not_private(fallback, uid) is None:
        # Once made, it stays the one until the next boot: were /tmp/rootsand-UID used again when its taker
        # gives it back, the sandboxes started meanwhile would vanish from ps, stop and the sweeps.
        why = _not_private(shared, uid) if os.path.lexists(shared) else None
    else:
        why = None
        try:
            os.mkdir(shared, 0o700)
        except FileExistsError:
            pass  # ours from before, or another user's: looked at, not used
        except OSError as e:
            why = f"cannot be created ({e.strerror})"
        why = why or _not_private(shared, uid)
        if why is None:
            return shared
        hint = "set XDG_RUNTIME_DIR to a directory only you can write"
        if key is None:
            try:
                _make_runtime_key(key_path)
            except OSError as e:
                raise RootsandError(f"{shared} {why}, and {key_path} cannot be made: {e.strerror}",
                                    hint=hint) from None
            key = _runtime_key(key_path, uid)
            if key is None:
                raise RootsandError(f"{shared} {why}, and {key_path} is not a key of yours that only you can read",
                                    hint=f"remove {key_path} (a new one is made), or {hint}")
        fallback = _fallback_name(shared, key)
        try:
            os.mkdir(fallback, 0o700)
        except OSError:
            pass  # looked at below
        problem = _not_private(fallback, uid)
        if problem:
            raise RootsandError(f"{shared} {why}, and {fallback} {problem}",
                                hint=f"remove {key_path} (a new name is made), or {hint}")
    if why and why not in _warned:
        _warned.add(why)  # once per process: every access to the registry asks for the directory
        warn(f"{shared} {why}: using {fallback}")
    return fallback


_warned: set[str] = set()


def runtime_dirs_in_use() -> list[str]:
    """Where runtime_dir() keeps or may keep rootsand's state without XDG_RUNTIME_DIR (/tmp/rootsand-UID, its
    fallback when a key exists) and the key's directory; nothing is made (spec.own_dirs: never writable)."""
    uid = os.getuid()
    shared = f"/tmp/rootsand-{_host_uid(uid)}"
    key_path = _runtime_key_path(uid)
    key = _runtime_key(key_path, uid)
    return [shared, *([_fallback_name(shared, key)] if key else []), os.path.dirname(key_path)]


def _not_private(path: str, uid: int) -> str | None:
    """Why `path` is not a private directory of ours (ours, mode 0700, not a link), or None when it is.
    Only lstat: nothing in it is read."""
    try:
        st = os.lstat(path)
    except OSError as e:
        return f"cannot be looked at ({e.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != uid:
        return f"belongs to uid {st.st_uid}"
    if st.st_mode & 0o077:
        return f"is open to others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _fallback_name(shared: str, key: str) -> str:
    import hashlib

    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()  # a new name each boot: other users may have seen this one in /tmp
    except OSError:
        boot = ""
    return f"{shared}-{hashlib.sha256(f'{key} {boot}'.encode()).hexdigest()[:16]}"


def _runtime_key_path(uid: int) -> str:
    """$XDG_STATE_HOME/rootsand/runtime-key (~/.local/state/rootsand/...), where sandboxes cannot write
    (spec.own_dirs)."""
    state_home = os.environ.get("XDG_STATE_HOME", "")
    if not state_home.startswith("/"):  # a relative one is to be ignored (the XDG spec), as spec.own_dirs does
        import pwd

        try:  # inside a user namespace our uid may be 0: the passwd entry is the host uid's
            home = os.environ.get("HOME") or pwd.getpwuid(_host_uid(uid)).pw_dir
        except KeyError:
            home = "/nonexistent"
        state_home = os.path.join(home, ".local", "state")
    return os.path.join(state_home, "rootsand", "runtime-key")


def _runtime_key(path: str, uid: int) -> str | None:
    """The key at `path` when it is a file of ours that no one else can read (only we can make one), else
    None: there is none (nor a fallback for it), or it is not to be trusted."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        key = os.read(fd, 64).strip().decode(errors="replace") if stat.S_ISREG(st.st_mode) else ""
    finally:
        os.close(fd)
    return key if st.st_uid == uid and not st.st_mode & 0o077 and len(key) == 32 else None


def _make_runtime_key(path: str) -> None:
    import secrets

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(16))
        os.link(tmp, path)  # whole or not at all
    except FileExistsError:
        pass  # made meanwhile by another command of ours: that one stays
    finally:
        os.unlink(tmp)


def stale_entries(directory: str, prefix: str) -> list[str]:
    """PREFIX-PID[.ext] entries of `directory` whose launcher PID is gone: killed before it could clean up."""
    stale = []
    for name in os.listdir(directory):
        pid = name[len(prefix) + 1:].split(".", 1)[0] if name.startswith(prefix + "-") else ""
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            stale.append(os.path.join(directory, name))
    return stale


def remove_stale(directory: str, prefix: str) -> None:
    """Remove the files (sockets) that killed launchers left in `directory`."""
    for path in stale_entries(directory, prefix):
        try:
            os.unlink(path)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------- registry
#
# One JSON file per running sandbox in RUNTIME_DIR/sandboxes/NAME.json, created with O_EXCL when the
# launcher starts (so a name is taken once), rewritten atomically (a rename) once the sandbox is up, and
# removed at exit. Every pid in it comes with its start time (field 22 of /proc/PID/stat): a pid is never
# signalled or joined unless the process there is still the one recorded, so a reused pid is safe. An
# entry whose launcher is gone (SIGKILL) is removed by the next command that reads the registry.



def _host_uid(uid: int) -> int:
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, outside, count = (int(n) for n in line.split())
                if inside <= uid < inside + count:
                    return outside + uid - inside
    except (OSError, ValueError):
        pass
    return uid


def registry_dir() -> str:
    path = os.path.join(runtime_dir(), "sandboxes")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
            from rootsand.errors import RootsandError

            raise RootsandError(f"{path} is not a private directory of yours", hint="remove it") from None
    return path


def _stat_field(pid: int, index: int) -> int | None:
    """Field `index` (counted after the command name) of /proc/PID/stat, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[index])
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot, or None when there is no such process."""
    return _stat_field(pid, 19)


def parent_of(pid: int) -> int | None:
    """The parent pid of process `pid`, or None when there is no such process."""
    return _stat_field(pid, 1)


def alive(pid: int | None, started: int | None) -> bool:
    """True when `pid` is still the process that started at `started`."""
    return bool(pid) and started is not None and start_time(pid) == started


def claim(name: str) -> str:
    """Take `name` for this launcher: the entry's path. A name in use by a live sandbox is an error; one
    left by a killed launcher is taken over."""
    from rootsand.errors import RootsandError

    path = os.path.join(registry_dir(), f"{name}.json")
    me = {"name": name, "launcher": {"pid": os.getpid(), "start": start_time(os.getpid())}, "status": "starting",
          "created": time.time()}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            entry = read_entry(path)
            if entry is not None:
                launcher = entry.get("launcher", {})
                raise RootsandError(f"a sandbox named {name} is already running (launcher pid {launcher.get('pid')})",
                                    hint="pick another --name, or 'rootsand stop " + name + "'")
            continue  # it was stale and is gone now: try again
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me))  # dumps: the C encoder (json.dump always takes the Python one)
        return path
    raise RootsandError(f"cannot take the name {name} in {registry_dir()}")


def publish(path: str, entry: dict) -> None:
    """Replace the entry at `path` atomically (readers see the old one or the new one, never half)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(entry))  # dumps: the C encoder, 5x faster on a plan than json.dump
    os.rename(tmp, path)


def forget(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _load(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd) as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) else None


def read_raw(path: str) -> dict:
    """The entry at `path` as it is, live or not ({} when it cannot be read)."""
    return _load(path) or {}


def _is_live(entry: dict) -> bool:
    launcher = entry.get("launcher", {})
    return isinstance(launcher, dict) and alive(launcher.get("pid"), launcher.get("start"))


def read_entry(path: str) -> dict | None:
    """The entry at `path` if its launcher is alive; a stale one is removed, a broken one ignored."""
    entry = _load(path)
    if entry is None:
        return None
    if not _is_live(entry):
        # Its launcher was killed before it could clean up: the setuid bits it would have cleared go now,
        # the mount points it made go to the ledger.
        if _made(entry) or _audit(entry) or _pinned(entry) or (entry.get("protect") or {}).get("absent"):
            sweep_leftovers()  # clears, checks and retires it, under the lock
        else:
            _clear_setuid_bits(entry)
            forget(path)
        return None
    return entry


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


def entries() -> list[dict]:
    """Every running sandbox of this user, oldest first."""
    directory = registry_dir()
    found = []
    for name in os.listdir(directory):
        if name.endswith(".tmp"):
            pid = name.rsplit(".", 2)[-2]
            if pid.isdigit() and start_time(int(pid)) is None:
                forget(os.path.join(directory, name))
            continue
        if name.endswith(".json"):
            entry = read_entry(os.path.join(directory, name))
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda e: e.get("created", 0))


def find(name: str) -> dict:
    from rootsand.errors import RootsandError

    if "/" in name or name.startswith("."):
        raise RootsandError(f"invalid sandbox name {name!r}")
    entry = read_entry(os.path.join(registry_dir(), f"{name}.json"))
    if entry is None:
        raise RootsandError(f"no sandbox named {name} is running", hint="'rootsand ps' lists them")
    return entry


# ---------------------------------------------------------------------------------- protected paths' leftovers

LEDGER = "leftover-mount-points.ledger"  # not .json: it is no sandbox entry


def empty_mount_points_of_others(own_entry: str) -> set[str]:
    """The placeholders that the live sandboxes but the one at `own_entry` made and that are still empty:
    their mount points, which an after-run check leaves alone. Filled, they are what a sandbox planted."""
    made = []
    directory = registry_dir()
    for name in os.listdir(directory):
        path = os.path.join(directory, name)
        if name.endswith(".json") and path != own_entry:
            entry = _load(path)
            if entry and _is_live(entry):
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
    fd = os.open(registry_dir(), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # flock works on directories too
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


def sweep_leftovers(own_entry: str | None = None, made: list | None = None) -> bool:
    """Remove the mount points in `made` (the ending launcher's, [path, is_dir] pairs, its entry then
    forgotten), in the ledger and in the entries of killed launchers, unless a live sandbox still covers
    them (those stay in the ledger). False when the lock was busy: then nothing changed, and an ending
    launcher leaves its entry, which turns stale when it exits, for the next command to sweep."""
    from rootsand.errors import warn

    directory = registry_dir()
    lock = protect_lock(exclusive=True)
    if lock is None:
        return False
    ledger_path = os.path.join(directory, LEDGER)
    try:
        if own_entry:
            forget(own_entry)
        todo = [tuple(item) for item in (_load_ledger(ledger_path) + list(made or []))]
        covered = set()
        stale = []
        for name in os.listdir(directory):
            if not name.endswith(".json"):
                continue
            entry = _load(os.path.join(directory, name))
            if entry is None:
                continue
            if _is_live(entry):
                protect = entry.get("protect")
                covered |= set(protect.get("covered", [])) if isinstance(protect, dict) else set()
            else:
                _clear_setuid_bits(entry)  # before the entry that says what to clear goes
                todo += [tuple(item) for item in _made(entry)]
                stale.append(entry)
                forget(os.path.join(directory, name))
        for entry in stale:  # killed before its own checks: what its sandbox did is checked now
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
        keep = []
        # Deepest first: a second sandbox may have made its own inside a directory the first one made.
        for path, is_dir in sorted(dict.fromkeys((str(p), bool(d)) for p, d in todo), key=lambda i: -len(i[0])):
            if any(c == path or c.startswith(path.rstrip("/") + "/") for c in covered):
                keep.append([path, is_dir])  # a live sandbox covers it, or something below it
            elif not remove_mount_point(path, is_dir) and os.path.lexists(path):
                # Made empty and read-only, yet filled: its protection was lifted from outside (see check_pinned)
                warn(quarantine(path, "was made empty and read-only for the run, and something was written there "
                                      "(its protection was lifted from outside the sandbox)"))
        _write_ledger(ledger_path, keep)
    finally:
        os.close(lock)
    return True


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
        own = runtime_dir()
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


def _load_ledger(path: str) -> list:
    data = _load(path) or {}
    items = data.get("made", [])
    return [item for item in items if isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)]


def _write_ledger(path: str, items: list) -> None:
    if items:
        publish(path, {"made": items})
    else:
        forget(path)

