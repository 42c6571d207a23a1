"""rootsand's own state on the host: the private runtime directory and what killed launchers left in it.

The registry of running sandboxes will live here too.
"""

import os
import stat


def runtime_dir() -> str:
    """A private directory for rootsand's sockets and state: $XDG_RUNTIME_DIR/rootsand, else /tmp/rootsand-UID.

    Either must be ours, mode 0700 and not a link: $XDG_RUNTIME_DIR comes from the environment, and /tmp is
    shared with everyone, so a directory another user made (or a link to one) would hand them our sockets.
    """
    from rootsand.errors import RootsandError

    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        try:
            st = os.lstat(base)
        except OSError as e:
            raise RootsandError(f"XDG_RUNTIME_DIR={base}: {e.strerror}",
                                hint="unset it, or point it at your own 0700 directory") from None
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
            raise RootsandError(f"XDG_RUNTIME_DIR={base} is not a directory of yours that only you can write",
                                hint="unset it, or point it at your own 0700 directory")
        path = os.path.join(base, "rootsand")
    else:
        # Named by the host's uid for us: inside a user namespace (rootsand unshare, another tool's), uid 0
        # must not take /tmp/rootsand-0, which is real root's.
        path = f"/tmp/rootsand-{_host_uid(uid)}"
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise RootsandError(f"cannot create {path}: {e.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o077:
        raise RootsandError(f"{path} is not a private directory of yours (owner, mode 0700, not a link)",
                            hint="remove it, or set XDG_RUNTIME_DIR to a directory only you can write")
    return path


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

import json
import time


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


def start_time(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


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
            json.dump(me, f)
        return path
    raise RootsandError(f"cannot take the name {name} in {registry_dir()}")


def publish(path: str, entry: dict) -> None:
    """Replace the entry at `path` atomically (readers see the old one or the new one, never half)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(entry, f)
    os.rename(tmp, path)


def forget(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def read_entry(path: str) -> dict | None:
    """The entry at `path` if its launcher is alive; a stale one is removed, a broken one ignored."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with os.fdopen(fd) as f:
            entry = json.load(f)
    except (OSError, ValueError):
        return None
    launcher = entry.get("launcher", {}) if isinstance(entry, dict) else {}
    if not alive(launcher.get("pid"), launcher.get("start")):
        forget(path)  # its launcher was killed before it could clean up
        return None
    return entry


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
