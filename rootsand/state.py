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
        path = f"/tmp/rootsand-{uid}"
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
