"""`rootsand unshare [--] COMMAND` (as `podman unshare`): COMMAND in a new user namespace with the
sandboxes' id map (uid 0 = you, then your subordinate ranges) and root's capabilities over it, and no
other isolation: the host's file system and network as they are, the current directory and environment
kept. So the files a sandbox left owned by subordinate ids can be listed (`ls -ln`), changed and removed
(`rm -rf build/`).
"""

import errno
import os
import signal

from rootsand.config import host, idmap
from rootsand.errors import ExitCode, RootsandError, warn
from rootsand.linux import libc, procfs
from rootsand.runtime import child, maps


def run(command: list[str]) -> int:
    facts = host.facts("none")
    ids = idmap.plan(facts.uid, facts.gid, facts.subuids, facts.subgids, facts.newuidmap, facts.newgidmap,
                     nested=facts.nested, inside_ids=tuple(facts.nested_ids) if facts.nested_ids else None)
    if ids.note:
        warn(ids.note + ": files of other ids cannot be changed")
    argv = command or [os.environ.get("SHELL") or "/bin/sh"]
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    launcher = os.getpid()
    pid, report_r = child.start(lambda _report_w: _child(argv, launcher, ready_w, go_r, ids),
                                failed="rootsand unshare", where="rootsand unshare")
    for fd in (ready_w, go_r):
        os.close(fd)
    # The terminal's signals reach the command too (same process group); this process only waits.
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    try:
        unshared = os.read(ready_r, 1) == b"U"
        if unshared:
            maps.write_maps(ids, pid)
            os.write(go_w, b"G")
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # our own unreaped child: its pid cannot be anyone else's
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(ready_r)
        os.close(go_w)
    if not unshared:
        os.waitpid(pid, 0)
        os.close(report_r)
        raise RootsandError("cannot create a user namespace: unshare failed", hint=procfs.userns_hint())
    return child.wait(pid, report_r)


def _child(argv, launcher: int, ready_w: int, go_r: int, ids) -> int:
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != launcher:
        return ExitCode.FAILURE
    try:
        libc.unshare(libc.CLONE_NEWUSER)
    except OSError:
        return ExitCode.FAILURE  # the launcher sees no "U" and explains
    os.write(ready_w, b"U")
    if os.read(go_r, 1) != b"G":
        return ExitCode.FAILURE
    uid, gid = ids.uid_lines[0][0], ids.gid_lines[0][0]  # root, or the one id there is
    if uid == 0 and gid == 0 and not ids.deny_setgroups:
        libc.setgroups_empty()
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # as root in the namespace, with its capabilities across execve
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise RootsandError(f"{argv[0]}: {e.strerror}", code=ExitCode.NOT_FOUND if e.errno == errno.ENOENT
                            else ExitCode.NOT_EXECUTABLE) from None
    return ExitCode.FAILURE  # not reached
