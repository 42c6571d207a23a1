"""rootsand's own state on the host: the private runtime directory and the registry of running sandboxes.

Reading it changes nothing: ps, inspect, exec and ns see an entry whose launcher is gone (killed before
it could clean up) as not running, and leave it as it is. What such a launcher left undone (its entry, the
mount points it made, the checks after its run) is guard/leftovers.py's to do: before a new sandbox
starts, and by `rootsand cleanup`.
"""

import json
import os
import stat
import time

from rootsand.linux import procfs


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
    shared = f"/tmp/rootsand-{procfs.host_uid(uid)}"
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
    fallback when a key exists) and the key's directory; nothing is made (hostfiles.own_dirs: never writable)."""
    uid = os.getuid()
    shared = f"/tmp/rootsand-{procfs.host_uid(uid)}"
    key_path = _runtime_key_path(uid)
    key = _runtime_key(key_path, uid)
    return [shared, *([_fallback_name(shared, key)] if key else []), os.path.dirname(key_path)]


def every_runtime_dir(env=None) -> list[str]:
    """Every directory where this user's rootsand keeps runtime state, whatever this environment says:
    $XDG_RUNTIME_DIR/rootsand where set, /run/user/UID/rootsand (a desktop session's, seen from cron or ssh
    without one), /tmp/rootsand-UID and this boot's fallback, and the key's directory. No sandbox sees them
    (runtime/hostprep.py)."""
    env = os.environ if env is None else env
    uid = procfs.host_uid(os.getuid())
    dirs = [os.path.join(os.path.normpath(env["XDG_RUNTIME_DIR"]), "rootsand")] \
        if env.get("XDG_RUNTIME_DIR", "").startswith("/") else []
    return list(dict.fromkeys(dirs + [f"/run/user/{uid}/rootsand"] + runtime_dirs_in_use()))  # the key's last


def make_runtime_dirs(env=None) -> None:
    """Make the runtime directories every_runtime_dir() names that are not there yet, private (0700), where
    their parent is: a sandbox is then shown none of them empty and later filled by a rootsand of another
    environment (cron's and the desktop's, /tmp/rootsand-UID and /run/user/UID/rootsand), since a tmpfs of
    its own covers each (runtime/hostprep.py). Only in a parent of ours (/run/user/UID): a name in a shared
    /tmp is made when used (runtime_dir), never for another uid a nested user namespace takes for its own."""
    for path in every_runtime_dir(env)[:-1]:  # (the key's directory is made with its key, in the home)
        try:
            if os.stat(os.path.dirname(path)).st_uid == os.getuid():
                os.mkdir(path, 0o700)
        except OSError:
            pass


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

    # A new name each boot: other users may have seen this one in /tmp
    boot = procfs.read_sysctl("/proc/sys/kernel/random/boot_id") or ""
    return f"{shared}-{hashlib.sha256(f'{key} {boot}'.encode()).hexdigest()[:16]}"


def _runtime_key_path(uid: int) -> str:
    """$XDG_STATE_HOME/rootsand/runtime-key (~/.local/state/rootsand/...), where sandboxes cannot write
    (hostfiles.own_dirs)."""
    state_home = os.environ.get("XDG_STATE_HOME", "")
    if not state_home.startswith("/"):  # a relative one is to be ignored (the XDG spec), as hostfiles.own_dirs does
        import pwd

        try:  # inside a user namespace our uid may be 0: the passwd entry is the host uid's
            home = os.environ.get("HOME") or pwd.getpwuid(procfs.host_uid(uid)).pw_dir
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


def first_this_boot(name: str, text: str) -> bool:
    """True when `text` was not said yet under `name` since the machine booted, and marks it said: a
    warning about the host (no delegated cgroup) is worth one line per boot, not one per run. The mark is
    RUNTIME_DIR/said-NAME holding the boot id and the text (a runtime dir in /tmp may outlive a boot);
    where it cannot be kept, the line is said."""
    from rootsand.errors import RootsandError

    boot = procfs.read_sysctl("/proc/sys/kernel/random/boot_id") or ""
    mark = f"{boot}\n{text}\n".encode()
    try:
        path = os.path.join(runtime_dir(), f"said-{name}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    except (OSError, RootsandError):  # an unusable runtime dir (its error comes where it matters): say it
        return True
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return True  # (a FIFO there would have held the launcher at the read)
        if os.read(fd, len(mark) + 1) == mark:
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, mark, 0)
        return True
    except OSError:
        return True
    finally:
        os.close(fd)


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
# entry whose launcher is gone (SIGKILL) is not running, and stays until guard/leftovers.py retires it.


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


# A running `rootsand ns monitor` reads REGISTRY/monitor-PID.fifo: each launcher writes a line there when its
# sandbox is up and another when it has ended, so a sandbox that lives a millisecond is seen, its start and
# its end, however late the monitor gets to run (its scans of /proc can miss one; the lines wait in the pipe).
MONITOR = "monitor"
PIPE_BUF = 4096  # a write to a pipe up to this size is never interleaved with another's


def tell_monitors(directory: str, message: dict) -> None:
    """One line of JSON to each running monitor's FIFO in the registry `directory`, without ever waiting: a
    monitor that is gone (no reader) or does not keep up (a full pipe) misses it, and the run goes on."""
    line = (json.dumps(message) + "\n").encode()
    if len(line) > PIPE_BUF:
        line = (json.dumps({**message, "command": ""}) + "\n").encode()
    try:
        names = [name for name in os.listdir(directory) if name.startswith(MONITOR + "-") and name.endswith(".fifo")]
    except OSError:
        return
    for name in names:
        try:
            fd = os.open(os.path.join(directory, name), os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # ENXIO: its monitor was killed (the next monitor removes the FIFO)
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, line)
        except OSError:
            pass
        finally:
            os.close(fd)


def alive(pid: int | None, started: int | None) -> bool:
    """True when `pid` is still the process that started at `started`, and not a zombie."""
    return bool(pid) and started is not None and procfs.live_start_time(pid) == started


def pidfd_of(process: dict) -> int | None:
    """A pidfd of a process an entry records ({"pid", "start"}), if it is still the one that was recorded
    (its start time); None when it is gone."""
    pid = process.get("pid")
    if not pid:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    if procfs.start_time(pid) != process.get("start"):  # checked after opening: the fd cannot change hands
        os.close(fd)
        return None
    return fd


def entry_path(name: str) -> str:
    """Where the entry of the sandbox `name` is, or would be."""
    from rootsand.errors import RootsandError

    if "/" in name or name.startswith("."):
        raise RootsandError(f"invalid sandbox name {name!r}")
    return os.path.join(registry_dir(), f"{name}.json")


# ---------------------------------------------------------------------------------------------- detached
#
# RUNTIME_DIR/detached/NAME.json records a detached sandbox (`run -d`) from its start until `rootsand rm`:
# "running" with its launcher (pid and start time) while it runs, "exited" with the exit status and the time
# once it has ended. A "running" record whose launcher is gone is a killed launcher's. NAME.log and
# NAME.log.1 beside it hold the output (runtime/detach.py); NAME.attach is the socket `rootsand attach`
# connects to while a sandbox with a terminal runs. The name stays taken while the record is kept.


def detached_dir() -> str:
    path = os.path.join(runtime_dir(), "detached")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        if _not_private(path, os.getuid()):
            from rootsand.errors import RootsandError

            raise RootsandError(f"{path} is not a private directory of yours", hint="remove it") from None
    return path


def detached_path(name: str, suffix: str = ".json") -> str:
    entry_path(name)  # the name's checks
    return os.path.join(detached_dir(), name + suffix)


def create(path: str, record: dict) -> bool:
    """Make the file at `path` holding `record`, whole, unless it exists (False): written aside, then linked."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(record))
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def detached_records() -> list[dict]:
    """Every detached sandbox kept, oldest first, each with "state": running, exited or killed."""
    directory = detached_dir()
    found = []
    for name in os.listdir(directory):
        if name.endswith(".json"):
            # one that cannot be read (a caller killed as it wrote it, before records were written whole) is
            # a killed one's: listed, so that rm can free its name
            record = load(os.path.join(directory, name)) or {"name": name[:-5]}
            if record.get("name") == name[:-5]:
                found.append({**record, "state": record_state(record)})
    return sorted(found, key=lambda r: r.get("created", 0))


def record_state(record: dict) -> str:
    """exited; running (its launcher runs); starting (its `run -d` caller runs, before the launcher); killed."""
    if record.get("status") == "exited":
        return "exited"
    if is_live(record):
        return "running"
    caller = record.get("caller")
    if isinstance(caller, dict) and alive(caller.get("pid"), caller.get("start")):
        return "starting"
    return "killed"


def claim(name: str, detached: bool = False) -> str | None:
    """Take `name` for this launcher: the entry's path, or None while the entry of a killed launcher holds it
    (guard/leftovers.py retires that one first). A name in use by a live sandbox, or kept by a detached one
    that has ended, is an error (`detached`: the record is ours)."""
    from rootsand.errors import RootsandError

    path = os.path.join(registry_dir(), f"{name}.json")
    if not detached and os.path.lexists(os.path.join(os.path.dirname(
            os.path.dirname(path)), "detached", f"{name}.json")):
        raise RootsandError(f"the name {name} is kept by a detached sandbox that has ended",
                            hint=f"'rootsand rm {name}' removes it and its log, or pick another --name")
    me = {"name": name, "launcher": {"pid": os.getpid(), "start": procfs.start_time(os.getpid())},
          "status": "starting", "created": time.time()}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        entry = read_entry(path)
        if entry is not None:
            launcher = entry.get("launcher", {})
            raise RootsandError(f"a sandbox named {name} is already running (launcher pid {launcher.get('pid')})",
                                hint="pick another --name, or 'rootsand stop " + name + "'") from None
        return None
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(me))  # dumps: the C encoder (json.dump always takes the Python one)
    return path


def publish(path: str, entry: dict) -> None:
    """Replace the entry at `path` atomically (readers see the old one or the new one, never half). Records
    (the plan) may be in it as they are: the C encoder asks _record_fields for them, twice as fast on a plan
    as Record.to_json() first, and the same text."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(entry, default=_record_fields))  # dumps: the C encoder (json.dump: the Python one)
    os.rename(tmp, path)


def _record_fields(value) -> dict:
    as_dict = getattr(value, "as_dict", None)  # a config.model.Record
    if as_dict is None:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")
    return as_dict()


def forget(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def load(path: str) -> dict | None:
    """The JSON object at `path` (an entry, live or not, or the ledger); None when it cannot be read."""
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
    return load(path) or {}


def is_live(entry: dict) -> bool:
    """True while the launcher that wrote `entry` runs."""
    launcher = entry.get("launcher", {})
    return isinstance(launcher, dict) and alive(launcher.get("pid"), launcher.get("start"))


def read_entry(path: str) -> dict | None:
    """The entry at `path` if its launcher is alive; None for a stale one (left as it is) or a broken one."""
    entry = load(path)
    return entry if entry is not None and is_live(entry) else None


def entries() -> list[dict]:
    """Every running sandbox of this user, oldest first."""
    directory = registry_dir()
    found = []
    for name in os.listdir(directory):
        if name.endswith(".json"):
            entry = read_entry(os.path.join(directory, name))
            if entry is not None:
                found.append(entry)
    return sorted(found, key=lambda e: e.get("created", 0))


def find(name: str) -> dict:
    from rootsand.errors import RootsandError

    entry = read_entry(entry_path(name))
    if entry is None:
        raise RootsandError(f"no sandbox named {name} is running", hint="'rootsand ps' lists them")
    return entry
