"""A bubblewrap command line as a Plan: bwrap's options, parsed in order (argument order is mount order),
with bubblewrap's defaults where they differ from rootsand's profiles.

    parse(args, read_fd) -> Parsed      the options; `read_fd(fd)` reads --args and the data options' fds
    plan(parsed, host)    -> Plan       pure: nothing is read or made here

A bwrap sandbox has nothing unshared unless asked (but the user and mount namespaces, without which nothing
can be mounted unprivileged), keeps the caller's environment and ids (its own uid mapped to itself, or to
--uid), and has no profile mounts: the root is an empty tmpfs that its options fill. What cannot mean what it
means to a setuid bwrap (joining namespaces by fd, --userns-block-fd) is refused with a `bwrap:` line.
"""

import os

from rootsand.config import idmap
from rootsand.config.model import CAPABILITIES
from rootsand.config.plan import DEV_NODES, MOUNT_FLAGS, PROC_MASKED_DIRS, PROC_MASKED_FILES, PROC_READ_ONLY, \
    MountStep, Network, Plan, writable_sources

MAX_ARGS = 9000  # bubblewrap's limit on the arguments, --args files included
MAX_TMPFS_BYTES = (2 ** 64 - 1) // 2  # SIZE_MAX / 2, bubblewrap's cap for --size
# bwrap's namespaces: option -> rootsand's name
UNSHARE = {"--unshare-ipc": "ipc", "--unshare-pid": "pid", "--unshare-net": "net", "--unshare-uts": "uts",
           "--unshare-cgroup": "cgroup", "--unshare-cgroup-try": "cgroup"}
# Options that need bubblewrap's own setuid or fd-passing machinery: refused, each with why.
REFUSED = {
    "--userns": "joining a user namespace by fd", "--userns2": "joining a user namespace by fd",
    "--pidns": "joining a PID namespace by fd", "--userns-block-fd": "--userns-block-fd",
    "--exec-label": "SELinux labels", "--file-label": "SELinux labels",
}
ONE_ARG = {"--args", "--argv0", "--uid", "--gid", "--hostname", "--chdir", "--unsetenv", "--lock-file",
           "--sync-fd", "--block-fd", "--info-fd", "--json-status-fd", "--cap-add", "--cap-drop", "--perms",
           "--size", "--remount-ro", "--overlay-src", "--tmp-overlay", "--ro-overlay", "--proc", "--dev",
           "--tmpfs", "--mqueue", "--dir", "--userns", "--userns2", "--pidns", "--userns-block-fd",
           "--exec-label", "--file-label", "--seccomp", "--add-seccomp-fd"}
TWO_ARGS = {"--setenv", "--bind", "--bind-try", "--ro-bind", "--ro-bind-try", "--dev-bind", "--dev-bind-try",
            "--bind-fd", "--ro-bind-fd", "--file", "--bind-data", "--ro-bind-data", "--symlink", "--chmod"}
FLAGS = {"--unshare-all", "--share-net", "--unshare-user", "--unshare-user-try", "--disable-userns",
         "--assert-userns-disabled", "--clearenv", "--new-session", "--die-with-parent", "--as-pid-1",
         "--level-prefix", "--not-a-security-boundary", *UNSHARE}
BIND_OPTIONS = {"--bind": "bind", "--ro-bind": "ro-bind", "--dev-bind": "dev-bind"}


class BwrapError(Exception):
    """A `bwrap: MESSAGE` line and exit status 1, as bubblewrap's die()."""


class Parsed:
    """bwrap's options as given: the ops in order and the settings (last one wins, as in bubblewrap)."""

    def __init__(self, env: dict):
        self.ops: list[dict] = []  # MountStep fields, in order
        self.unshare: set[str] = set()
        self.unshare_user = False
        self.share_net = False
        self.env = dict(env)
        self.uid: int | None = None
        self.gid: int | None = None
        self.hostname: str | None = None
        self.chdir: str | None = None
        self.argv0: str | None = None
        self.lock_files: list[str] = []
        self.info_fd: int | None = None
        self.json_status_fd: int | None = None
        self.block_fd: int | None = None
        self.sync_fd: int | None = None
        self.cap_add: list[str] = []
        self.cap_drop: list[str] = []
        self.caps_all: bool | None = None  # --cap-add ALL / --cap-drop ALL, in order
        self.new_session = False
        self.die_with_parent = False
        self.as_pid_1 = False
        self.disable_userns = False
        self.assert_userns_disabled = False
        self.level_prefix = False
        self.seccomp: list[bytes] = []  # compiled BPF programs, in order
        self.seccomp_given: str | None = None  # --seccomp or --add-seccomp-fd: the two do not mix
        self.warnings: list[str] = []
        self.command: list[str] = []


def _fd(value: str) -> int:
    if not value.isdigit():
        raise BwrapError(f"Invalid fd: {value}")
    return int(value)


def _octal(option: str, value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        mode = -1
    if not value or mode < 0 or mode > 0o7777:
        raise BwrapError(f"{option} takes an octal argument <= 07777")
    return mode


def _size(value: str) -> int:
    # strtoull with base 0 (0x.. and 0.. prefixes), a digit first: no sign, no space, not zero
    try:
        size = int(value, 0) if value[:1].isdigit() else 0
    except ValueError:
        size = 0
    if not value[:1].isdigit() or size == 0 or size >= 2 ** 64:
        raise BwrapError("--size takes a non-zero number of bytes")
    if size > MAX_TMPFS_BYTES:
        raise BwrapError(f"--size (for tmpfs) is limited to {MAX_TMPFS_BYTES}")
    return size


def _cap(option: str, name: str) -> str:
    full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
    if full not in CAPABILITIES:
        raise BwrapError(f"unknown cap: {name}")
    return full


def _read(read_fd, fd: int, what: str = "") -> bytes:
    try:
        return read_fd(fd)
    except OSError as e:
        raise BwrapError(f"Can't read {what or f'from fd {fd}'}: {e.strerror}") from None


def expand_args(args: list[str], read_fd) -> list[str]:
    """The command line with each `--args FD` (before the command) replaced by the NUL-separated arguments
    read from FD, as bubblewrap reads them."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-") or arg == "--":
            return out + args[i:]
        if arg == "--args":
            if i + 1 >= len(args):
                raise BwrapError("--args takes an argument")
            data = _read(read_fd, _fd(args[i + 1]))
            items = data.split(b"\0")
            if items and items[-1] == b"":
                items.pop()
            inner = [item.decode("utf-8", "surrogateescape") for item in items]
            if "--args" in inner:
                raise BwrapError("--args not supported in arguments file")
            out += inner
            i += 2
            continue
        count = 2 if arg in ONE_ARG else 3 if arg in TWO_ARGS else 4 if arg == "--overlay" else 1
        out += args[i:i + count]
        i += count
        if len(out) > MAX_ARGS:
            raise BwrapError(f"Exceeded maximum number of arguments {MAX_ARGS}")
    return out


def parse(args: list[str], env: dict, read_fd, fd_path=lambda fd: f"/proc/self/fd/{fd}") -> Parsed:
    """Parse bwrap's options in order (bubblewrap's parse_args). BwrapError for what bwrap dies on. `read_fd`
    reads an fd's data (--args, --file...), `fd_path` names what an fd is open on (--bind-fd: the path it has
    now is what is bound)."""
    args = expand_args(args, read_fd)
    p = Parsed(env)
    perms: int | None = None
    size: int | None = None
    overlay_src: list[str] = []
    seccomp_fds: list[int] = []
    i = 0

    def need(count: int, message: str) -> list[str]:
        if i + count >= len(args):
            raise BwrapError(message)
        return args[i + 1:i + 1 + count]

    def op(**fields) -> None:
        p.ops.append({"option": arg, **fields})

    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-"):
            break
        # --perms and --size modify the next option that makes something; each other may come between
        if perms is not None and arg not in ("--dir", "--file", "--bind-data", "--ro-bind-data", "--tmpfs",
                                             "--chmod", "--size", "--perms"):
            raise BwrapError("--perms must be followed by an option that creates a file")
        if size is not None and arg not in ("--tmpfs", "--perms", "--size"):
            raise BwrapError("--size must be followed by --tmpfs")
        if overlay_src and arg not in ("--overlay-src", "--overlay", "--tmp-overlay", "--ro-overlay"):
            raise BwrapError("--overlay-src must be followed by another --overlay-src or one of --overlay, "
                             "--tmp-overlay, or --ro-overlay")
        takes = 1 if arg in ONE_ARG else 2 if arg in TWO_ARGS else 3 if arg == "--overlay" else 0
        if takes:
            word = {1: "an argument", 2: "two arguments", 3: "three arguments"}[takes]
            values = need(takes, f"{arg} takes {word}")
        else:
            values = []
        if arg in REFUSED:
            raise BwrapError(f"{arg} is not supported by rootsand's bwrap: {REFUSED[arg]} needs bubblewrap itself")
        if arg in ("--help",):
            raise _Help()
        if arg == "--version":
            raise _Version()
        if arg == "--unshare-all":
            p.unshare |= {"ipc", "pid", "net", "uts", "cgroup"}
            p.unshare_user = True  # --unshare-user-try: always possible here
        elif arg == "--share-net":
            p.unshare.discard("net")
        elif arg in ("--unshare-user", "--unshare-user-try"):
            p.unshare_user = True
        elif arg in UNSHARE:
            p.unshare.add(UNSHARE[arg])
        elif arg == "--not-a-security-boundary":
            pass  # bubblewrap 0.11: a hint that the sandbox need not resist its own processes; nothing to do
        elif arg == "--disable-userns":
            p.disable_userns = True
        elif arg == "--assert-userns-disabled":
            p.assert_userns_disabled = True
        elif arg in ("--uid", "--gid"):
            if not values[0].isdigit():
                raise BwrapError(f"Invalid {arg[2:]}: {values[0]}")
            setattr(p, arg[2:], int(values[0]))
        elif arg == "--hostname":
            p.hostname = values[0]
        elif arg == "--chdir":
            if p.chdir is not None:
                p.warnings.append("Only the last --chdir option will take effect")
            p.chdir = values[0]
        elif arg == "--argv0":
            p.argv0 = values[0]
        elif arg == "--clearenv":
            p.env = {}
        elif arg == "--setenv":
            p.env[values[0]] = values[1]
        elif arg == "--unsetenv":
            p.env.pop(values[0], None)
        elif arg == "--lock-file":
            p.lock_files.append(values[0])
        elif arg in ("--info-fd", "--json-status-fd", "--block-fd", "--sync-fd"):
            setattr(p, arg[2:].replace("-", "_"), _fd(values[0]))
        elif arg in ("--cap-add", "--cap-drop"):
            adding = arg == "--cap-add"
            if values[0].upper() == "ALL":
                p.caps_all = adding
                p.cap_add, p.cap_drop = [], []
            else:
                (p.cap_add if adding else p.cap_drop).append(_cap(arg, values[0]))
        elif arg in ("--new-session", "--die-with-parent", "--as-pid-1", "--level-prefix"):
            setattr(p, arg[2:].replace("-", "_"), True)
        elif arg == "--perms":
            if perms is not None:
                raise BwrapError("--perms given twice for the same action")
            perms = _octal(arg, values[0])
        elif arg == "--size":
            if size is not None:
                raise BwrapError("--size given twice for the same action")
            size = _size(values[0])
        elif arg == "--chmod":
            op(type="chmod", dst=values[1], mode=_octal(arg, values[0]))
        elif arg.removesuffix("-try") in BIND_OPTIONS:
            op(type=BIND_OPTIONS[arg.removesuffix("-try")], src=values[0], dst=values[1],
               optional=arg.endswith("-try"))
        elif arg in ("--bind-fd", "--ro-bind-fd"):
            fd = _fd(values[0])
            op(type="bind" if arg == "--bind-fd" else "ro-bind", src=fd_path(fd), dst=values[1], optional=False)
        elif arg == "--remount-ro":
            op(type="remount-ro", dst=values[0])
        elif arg == "--overlay-src":
            overlay_src.append(values[0])
        elif arg in ("--overlay", "--tmp-overlay", "--ro-overlay"):
            least = 2 if arg == "--ro-overlay" else 1
            if len(overlay_src) < least:
                raise BwrapError(f"{arg} requires at least {'one' if least == 1 else 'two'} --overlay-src")
            if arg == "--overlay":
                op(type="overlay", dst=values[2], lower=list(overlay_src), upper=values[0], work=values[1])
            elif arg == "--tmp-overlay":
                op(type="overlay", dst=values[0], lower=list(overlay_src), upper="tmpfs")
            else:
                op(type="overlay", dst=values[0], lower=list(overlay_src), upper="none")
            overlay_src = []
        elif arg in ("--proc", "--dev", "--mqueue"):
            op(type=arg[2:], dst=values[0])
        elif arg == "--tmpfs":
            op(type="tmpfs", dst=values[0], mode=0o755 if perms is None else perms, size=size)
            perms = size = None
        elif arg == "--dir":
            op(type="dir", dst=values[0], mode=perms)
            perms = None
        elif arg in ("--file", "--bind-data", "--ro-bind-data"):
            data = _read(read_fd, _fd(values[0]))
            default = 0o666 if arg == "--file" else 0o600
            op(type="file" if arg == "--file" else "data", dst=values[1],
               mode=default if perms is None else perms, data=data, read_only=arg == "--ro-bind-data")
            perms = None
        elif arg in ("--seccomp", "--add-seccomp-fd"):
            if p.seccomp_given and p.seccomp_given != arg:
                raise BwrapError(f"{arg} cannot be combined with {p.seccomp_given}")
            if arg == "--seccomp" and seccomp_fds:
                p.warnings.append("Only the last --seccomp option will take effect")
                seccomp_fds = []
            p.seccomp_given = arg
            seccomp_fds.append(_fd(values[0]))  # read once the options are parsed, as bubblewrap does
        elif arg == "--symlink":
            op(type="symlink", src=values[0], dst=values[1])
        else:
            raise BwrapError(f"Unknown option {arg}")
        i += 1 + takes
    if perms is not None:
        raise BwrapError("--perms must be followed by an option that creates a file")
    if size is not None:
        raise BwrapError("--size must be followed by --tmpfs")
    if overlay_src:
        raise BwrapError("--overlay-src must be followed by another --overlay-src or one of --overlay, "
                         "--tmp-overlay, or --ro-overlay")
    for fd in seccomp_fds:
        data = _read(read_fd, fd, "seccomp data")
        if len(data) % 8:
            raise BwrapError("Invalid seccomp data, must be multiple of 8")
        p.seccomp.append(data)
    p.command = args[i:]
    if not p.command:
        raise _Usage()
    _check(p)
    return p


class _Help(Exception):
    pass


class _Version(Exception):
    pass


class _Usage(Exception):
    pass


def _check(p: Parsed) -> None:
    """bubblewrap's checks of the options together."""
    if p.uid is not None and not p.unshare_user:
        raise BwrapError("Specifying --uid requires --unshare-user or --userns")
    if p.gid is not None and not p.unshare_user:
        raise BwrapError("Specifying --gid requires --unshare-user or --userns")
    if p.hostname is not None and "uts" not in p.unshare:
        raise BwrapError("Specifying --hostname requires --unshare-uts")
    if p.as_pid_1 and "pid" not in p.unshare:
        raise BwrapError("Specifying --as-pid-1 requires --unshare-pid")
    if p.as_pid_1 and p.lock_files:
        raise BwrapError("Specifying --as-pid-1 and --lock-file is not permitted")
    if p.disable_userns and not p.unshare_user:
        raise BwrapError("--disable-userns requires --unshare-user")


def _parent_mode(mode: int | None) -> int:
    """The mode of the parents bubblewrap makes on the way to a dir or file: 0755, less what the new node
    itself keeps from its group and from others."""
    parents = 0o755
    if mode is not None and mode & 0o070 == 0:
        parents &= ~0o050
    if mode is not None and mode & 0o007 == 0:
        parents &= ~0o005
    return parents


def mount_steps(p: Parsed, cwd: str) -> list[MountStep]:
    """The ops as the runtime's MountSteps, in order."""
    steps = []
    for o in p.ops:
        kind = o["type"]
        origin = f"{o['option']} {o['dst']}"  # what an error names: "--dir /usr/x: Read-only file system"
        common = {"type": kind, "dst": o["dst"], "origin": origin, "on_host": True}
        if kind in ("bind", "ro-bind", "dev-bind"):
            step = MountStep(**common, src=os.path.join(cwd, o["src"]), optional=o["optional"], flags=list(MOUNT_FLAGS[kind]))
        elif kind == "tmpfs":
            options = {"mode": f"{o['mode']:o}", **({"size": str(o["size"])} if o["size"] else {})}
            step = MountStep(**common, flags=list(MOUNT_FLAGS["tmpfs"]), options=options, mode=o["mode"])
        elif kind == "proc":
            if "pid" not in p.unshare:  # bubblewrap binds the host's /proc when the PID namespace is shared
                step = MountStep(**{**common, "type": "bind"}, src="/proc", flags=list(MOUNT_FLAGS["bind"]))
            else:
                step = MountStep(**common, flags=list(MOUNT_FLAGS["proc"]), read_only=list(PROC_READ_ONLY),
                                 masked=list(PROC_MASKED_FILES + PROC_MASKED_DIRS))
        elif kind == "dev":
            step = MountStep(**common, flags=[f for f in MOUNT_FLAGS["dev"] if f != "ro"], nodes=list(DEV_NODES),
                             options={"mode": "0755", "size": "1m", "pts_max": "64"})
        elif kind == "mqueue":
            step = MountStep(**common, flags=list(MOUNT_FLAGS["mqueue"]))
        elif kind in ("dir", "file", "data"):
            data = o.get("data", b"")
            step = MountStep(**common, mode=o["mode"], parents=_parent_mode(o["mode"]),
                             content=data.decode("utf-8", "surrogateescape"),
                             flags=["ro"] if o.get("read_only") else [])
        elif kind == "symlink":
            step = MountStep(**common, src=o["src"])
        elif kind == "chmod":
            step = MountStep(**common, mode=o["mode"])
        elif kind == "remount-ro":
            step = MountStep(**common)
        elif kind == "overlay":
            # bwrap's --overlay-src are bottom first, overlayfs's (and MountStep's) top first; relative
            # paths are the current directory's, as bubblewrap resolves them
            upper = o["upper"] if o["upper"] in ("tmpfs", "none") else os.path.join(cwd, o["upper"])
            step = MountStep(**common, lower=[os.path.join(cwd, d) for d in reversed(o["lower"])], upper=upper,
                             work=os.path.join(cwd, o["work"]) if o.get("work") else None,
                             flags=list(MOUNT_FLAGS["overlay"]) + (["ro"] if upper == "none" else []))
        else:  # pragma: no cover - parse() makes no other
            raise BwrapError(f"internal: unknown op {kind}")
        steps.append(step)
    return steps


def plan(p: Parsed, uid: int, gid: int, pid: int, cwd: str, last_cap: int, self_exe: list[str],
         open_fds: list[int] = ()) -> Plan:
    """The Plan for a parsed bwrap command line, run by user `uid`:`gid` from `cwd`. Pure. `self_exe`: how to
    run this front end, for a command /proc/self/exe (bubblewrap's own binary, to a bwrap user). `open_fds`:
    the caller's descriptors still open: the command gets them, but those bwrap keeps for itself."""
    inside_uid = uid if p.uid is None else p.uid
    inside_gid = gid if p.gid is None else p.gid
    ids = idmap.IdPlan(uid_lines=[(inside_uid, uid, 1)], gid_lines=[(inside_gid, gid, 1)], deny_setgroups=True)
    namespaces = ["user", "mount"] + [ns for ns in ("pid", "uts", "ipc", "net", "cgroup") if ns in p.unshare]
    if uid == 0 and inside_uid == 0:  # bubblewrap run by root: root's capabilities, less what is dropped
        capabilities = set(CAPABILITIES[:last_cap + 1]) if p.caps_all is not False else set()
        capabilities = (capabilities | set(p.cap_add)) - set(p.cap_drop)
    else:  # anyone else, --uid 0 too, keeps only what --cap-add names
        capabilities = (set(CAPABILITIES[:last_cap + 1]) if p.caps_all else set(p.cap_add)) - set(p.cap_drop)
    env = dict(p.env)
    steps = mount_steps(p, cwd)
    argv = list(self_exe) + p.command[1:] if p.command[0] == "/proc/self/exe" else list(p.command)
    return Plan(
        name=f"bwrap-{pid}", profile="bwrap", argv=argv, env=env,
        chdir=p.chdir or cwd, cwd=cwd, chdir_else=[] if p.chdir else [env.get("HOME") or "/", "/"], set_pwd=True,
        argv0=p.argv0, hostname=p.hostname or "", homes=[],
        user="ids", run_uid=inside_uid, run_gid=inside_gid, setup_uid=inside_uid, setup_gid=inside_gid, ids=ids,
        namespaces=namespaces, rootfs=None, mounts=steps, writable=writable_sources(steps),
        network=Network(mode="none" if "net" in p.unshare else "host"),
        capabilities=[c for c in CAPABILITIES if c in capabilities],
        new_session=p.new_session, nested_userns=not p.disable_userns, seccomp=None,
        sysctls={"user/max_user_namespaces": "1"} if p.disable_userns else {},
        userns_layer=p.disable_userns,
        seccomp_bpf=[program.hex() for program in p.seccomp], block_fd=p.block_fd,
        keep_fds=sorted(set(open_fds) - {p.info_fd, p.json_status_fd, p.block_fd} - {0, 1, 2}),
        as_pid_1=p.as_pid_1, die_with_parent=p.die_with_parent, lock_files=list(p.lock_files),
    )


def usage(prog: str) -> str:
    """bwrap's --help, with rootsand's name for the program."""
    return f"""usage: {prog} [OPTIONS...] [--] COMMAND [ARGS...]

rootsand's bubblewrap-compatible front end: bwrap's options, carried out by rootsand's runtime.

    --help                       Print this help
    --version                    Print version
    --args FD                    Parse NUL-separated args from FD
    --argv0 VALUE                Set argv[0] to the value VALUE before running the program
    --level-prefix               Prepend e.g. <3> to diagnostic messages
    --unshare-all                Unshare every namespace we support by default
    --share-net                  Retain the network namespace (can only combine with --unshare-all)
    --unshare-user               Create new user namespace (may be automatically implied if not setuid)
    --unshare-user-try           Create new user namespace if possible else continue by skipping it
    --unshare-ipc                Create new ipc namespace
    --unshare-pid                Create new pid namespace
    --unshare-net                Create new network namespace
    --unshare-uts                Create new uts namespace
    --unshare-cgroup             Create new cgroup namespace
    --unshare-cgroup-try         Create new cgroup namespace if possible else continue by skipping it
    --disable-userns             Disable further use of user namespaces inside sandbox
    --assert-userns-disabled     Fail unless further use of user namespace inside sandbox is disabled
    --uid UID                    Custom uid in the sandbox (requires --unshare-user)
    --gid GID                    Custom gid in the sandbox (requires --unshare-user)
    --hostname NAME              Custom hostname in the sandbox (requires --unshare-uts)
    --chdir DIR                  Change directory to DIR
    --clearenv                   Unset all environment variables
    --setenv VAR VALUE           Set an environment variable
    --unsetenv VAR               Unset an environment variable
    --lock-file DEST             Take a lock on DEST while sandbox is running
    --bind SRC DEST              Bind mount the host path SRC on DEST
    --bind-try SRC DEST          Equal to --bind but ignores non-existent SRC
    --dev-bind SRC DEST          Bind mount the host path SRC on DEST, allowing device access
    --dev-bind-try SRC DEST      Equal to --dev-bind but ignores non-existent SRC
    --ro-bind SRC DEST           Bind mount the host path SRC readonly on DEST
    --ro-bind-try SRC DEST       Equal to --ro-bind but ignores non-existent SRC
    --bind-fd FD DEST            Bind open directory or path fd on DEST
    --ro-bind-fd FD DEST         Bind open directory or path fd read-only on DEST
    --remount-ro DEST            Remount DEST as readonly; does not recursively remount
    --overlay-src SRC            Read files from SRC in the following overlay
    --overlay RWSRC WORKDIR DEST Mount overlayfs on DEST, with RWSRC as the host path for writes
    --tmp-overlay DEST           Mount overlayfs on DEST, with writes going to an invisible tmpfs
    --ro-overlay DEST            Mount overlayfs read-only on DEST
    --proc DEST                  Mount new procfs on DEST
    --dev DEST                   Mount new dev on DEST
    --tmpfs DEST                 Mount new tmpfs on DEST
    --mqueue DEST                Mount new mqueue on DEST
    --dir DEST                   Create dir at DEST
    --file FD DEST               Copy from FD to destination DEST
    --bind-data FD DEST          Copy from FD to file which is bind-mounted on DEST
    --ro-bind-data FD DEST       Copy from FD to file which is readonly bind-mounted on DEST
    --symlink SRC DEST           Create symlink at DEST with target SRC
    --info-fd FD                 Write information about the running container to FD
    --json-status-fd FD          Write container status to FD as multiple JSON documents
    --block-fd FD                Block on FD until some data to read is available
    --sync-fd FD                 Keep this fd open while sandbox is running
    --new-session                Create a new terminal session
    --die-with-parent            Kills with SIGKILL child process (COMMAND) when bwrap or bwrap's parent dies.
    --as-pid-1                   Do not install a reaper process with PID=1
    --cap-add CAP                Add cap CAP when running as privileged user
    --cap-drop CAP               Drop cap CAP when running as privileged user
    --seccomp FD                 Load and use seccomp rules from FD (not repeatable)
    --add-seccomp-fd FD          Load and use seccomp rules from FD (repeatable)
    --perms OCTAL                Set permissions of next argument (--bind-data, --file, etc.)
    --size BYTES                 Set size of next argument (only for --tmpfs)
    --chmod OCTAL PATH           Change permissions of PATH (must already exist)

Not available (they need bubblewrap's own machinery): --userns, --userns2, --pidns, --userns-block-fd,
--exec-label, --file-label.
"""


def sources_missing(p: Parsed, lexists=os.path.lexists) -> str | None:
    """The first bind source (not a -try one) that is not there: bubblewrap's "Can't find source path"."""
    for o in p.ops:
        if o["type"] in ("bind", "ro-bind", "dev-bind") and not o.get("optional") and not lexists(o["src"]):
            return o["src"]
    return None
