"""Work on the files a sandbox left owned by subordinate ids: in a child process that is root of a user
namespace with the sandbox's map, with its capabilities there (CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE over
every mapped owner), and nothing else changed: the host's file system as it is."""

import os
import signal

from rootsand.errors import RootsandError


def as_sandbox_root(work, ids, userns_fd: int | None = None) -> tuple[list[str], str | None]:
    """work(out) in a child in the sandbox's own user namespace (`userns_fd`, held by its launcher) or in a
    new one with its map (`ids`, an IdPlan: written as the sandbox's was). work writes records to `out` (a
    text file), each ended by NUL, which no file name holds. The records, and what went wrong (None)."""
    from rootsand.linux import libc

    ready_r, ready_w = os.pipe()  # child -> us: it has its user namespace
    go_r, go_w = os.pipe()  # us -> child: the maps are written
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd in (ready_r, go_w, out_r):
                os.close(fd)
            libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
            import resource

            # A directory fd per level of a walk: a deep tree must not run out of them
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            if userns_fd is not None:
                libc.setns(userns_fd, libc.CLONE_NEWUSER)  # its owner: all capabilities there
            else:
                libc.unshare(libc.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            if userns_fd is not None or os.read(go_r, 1) == b"g":
                with os.fdopen(out_w, "w", errors="surrogateescape") as out:
                    work(out)
                code = 0
        finally:
            os._exit(code)
    for fd in (ready_w, go_r, out_w):
        os.close(fd)
    problem = None
    try:
        if os.read(ready_r, 1) != b"u":
            problem = "no user namespace for the work"
        elif userns_fd is None:
            from rootsand.runtime.maps import write_maps

            write_maps(ids, pid)
            os.write(go_w, b"g")
    except RootsandError as e:
        problem = e.message  # no map, no work: the child ends when go_w closes
    finally:
        os.close(ready_r)
        os.close(go_w)
    with os.fdopen(out_r, errors="surrogateescape") as out:
        records = out.read().split("\0")
    _, status = os.waitpid(pid, 0)
    if status != 0 and problem is None:
        problem = "the work failed"
    return [record for record in records if record], problem
