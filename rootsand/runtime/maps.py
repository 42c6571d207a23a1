"""Writing a user namespace's uid and gid maps: through the setuid newuidmap and newgidmap side by side,
or directly where the caller may (its own id only, or as root)."""

import os
import select
import signal
import stat
import time

from rootsand.config import idmap
from rootsand.errors import RootsandError
from rootsand.linux.procfs import userns_hint


def write_maps(ids: idmap.IdPlan, pid: int) -> None:
    """Write the uid and gid maps of process `pid`'s user namespace: through newuidmap and newgidmap, both
    at once, or directly (setgroups denied first where an unprivileged writer must)."""
    if ids.uid_helper:
        _run_helpers([idmap.helper_args(ids.uid_helper, pid, ids.uid_lines),
                      idmap.helper_args(ids.gid_helper, pid, ids.gid_lines)])
        return
    try:
        if ids.deny_setgroups:
            _write_proc(f"/proc/{pid}/setgroups", "deny")
        _write_proc(f"/proc/{pid}/uid_map", idmap.map_text(ids.uid_lines))
        _write_proc(f"/proc/{pid}/gid_map", idmap.map_text(ids.gid_lines))
    except OSError as e:
        raise RootsandError(f"cannot write the sandbox's id map: {e.strerror}", hint=userns_hint()) from None


def _run_helpers(argvs: list[list[str]], seconds: float = 30) -> None:
    """Run the helpers side by side (posix_spawn: no subprocess machinery), each one's output collected;
    the first that fails is the error."""
    running = []
    for argv in argvs:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.posix_spawn(argv[0], argv, {}, file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_end, 1), (os.POSIX_SPAWN_DUP2, write_end, 2)])
        except OSError as e:
            os.close(read_end)
            raise RootsandError(f"{os.path.basename(argv[0])} failed: {e.strerror}") from None
        finally:
            os.close(write_end)
        running.append((argv, pid, read_end, []))
    deadline = time.monotonic() + seconds
    open_ends = {read_end: output for _, _, read_end, output in running}
    while open_ends and (left := deadline - time.monotonic()) > 0:
        for fd in select.select(list(open_ends), [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if chunk:
                open_ends[fd].append(chunk)
            else:
                del open_ends[fd]
    failure = None
    for argv, pid, read_end, output in running:
        os.close(read_end)
        if read_end in open_ends:  # still talking at the deadline
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        if status != 0 and failure is None:
            failure = (argv, b"".join(output).decode(errors="replace"), status)
    if failure:
        argv, output, status = failure
        name = os.path.basename(argv[0])
        detail = " ".join(output.split()) or f"exit status {os.waitstatus_to_exitcode(status)}"
        if not is_privileged_helper(argv[0]):
            hint = f"{argv[0]} must be setuid root or have file capabilities: reinstall the 'uidmap' package"
        else:
            hint = "check your ranges in /etc/subuid and /etc/subgid, or use idmap = \"single\""
        raise RootsandError(f"{name} could not write the sandbox's id map: {detail}", hint=hint)


def _write_proc(path: str, text: str) -> None:
    """Write a /proc file in one write; an error names the file and what was written."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise OSError(e.errno, f"{path} ({text.strip()!r}): {os.strerror(e.errno)}") from None


def is_privileged_helper(path: str) -> bool:
    """True when a newuidmap/newgidmap binary can do its job: setuid root, or file capabilities."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_mode & stat.S_ISUID and st.st_uid == 0:
        return True
    try:
        return bool(os.getxattr(path, "security.capability"))
    except OSError:
        return False
