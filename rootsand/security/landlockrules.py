"""The Landlock ruleset of a sandbox as data, derived from its mount steps: a second wall behind the mounts.

The mounts decide what the command sees and may write; Landlock, installed just before seccomp
(runtime/command.py, security/landlock.py), holds the same line on its own, so that a mistake in one layer (a
mount flag lost, a bind made writable by a race) is not an escape:

- read everywhere in the sandbox's view: its root is rootsand's own, and shows only what is mounted;
- execute beneath the mounts whose flags allow it (not /proc, not /dev);
- write, make and remove beneath the writable mounts only: read-write binds, tmpfs, overlays, /dev/shm, mqueue;
  the device nodes of /dev and the files of /proc may be written, nothing made there. A home directory that
  the home rule keeps read-only gets write rights only in its writable exceptions.

Rules only ever add rights beneath a path, so a read-only mount inside a writable one (protected paths)
stays the mount's to enforce. Scoping (ABI 6): abstract Unix sockets and signals of processes outside the
sandbox are out of reach, also where the file system part is off ("scope-only").

Pure: names here, bits and system calls in security/landlock.py.
"""

from rootsand.config.model import Record

MODES = ("on", "off", "scope-only")

# Each right, its bit, and the ABI that brought it. IOCTL_DEV (ABI 5) is not handled: device nodes are in /dev
# alone (binds are nodev), whose ioctls seccomp judges already (TIOCSTI).
FS_RIGHTS = {
    "execute": (1 << 0, 1), "write_file": (1 << 1, 1), "read_file": (1 << 2, 1), "read_dir": (1 << 3, 1),
    "remove_dir": (1 << 4, 1), "remove_file": (1 << 5, 1), "make_char": (1 << 6, 1), "make_dir": (1 << 7, 1),
    "make_reg": (1 << 8, 1), "make_sock": (1 << 9, 1), "make_fifo": (1 << 10, 1), "make_block": (1 << 11, 1),
    "make_sym": (1 << 12, 1), "refer": (1 << 13, 2), "truncate": (1 << 14, 3),
}
SCOPES = {"abstract_unix_socket": (1 << 0, 6), "signal": (1 << 1, 6)}
# What a file (not a directory) can be granted; the rest applies beneath directories only.
FILE_RIGHTS = ("execute", "write_file", "read_file", "truncate")

READ = ["read_file", "read_dir"]
# make_char and make_block are handled and never granted: no device node is made in a sandbox.
WRITE = ["write_file", "truncate", "remove_dir", "remove_file", "make_dir", "make_reg", "make_sock", "make_fifo",
         "make_sym", "refer"]
HANDLED = list(FS_RIGHTS)
WRITABLE_TYPES = ("bind", "dev-bind", "tmpfs", "overlay", "mqueue")
# steps that make or change something in place, covering nothing below them (config/plan.py uses it too)
NOT_MOUNTS = ("symlink", "dir", "file", "data", "chmod", "remount-ro")
# For the tests that prove the wall stands alone: paths (":"-separated, inside) where the mounts let the
# command write and Landlock is to refuse it, as after a mistake in the mount layer. It only ever takes
# write rights away, from the rules at or beneath those paths, and the plan shows it (--dry-run).
REVOKE_VARIABLE = "ROOTSAND_TEST_LANDLOCK_READ_ONLY"


class Rule(Record):
    """Rights beneath one path inside the sandbox (a file: only FILE_RIGHTS count)."""

    FIELDS = {"path": "", "access": list, "why": ""}
    __slots__ = tuple(FIELDS)


class Ruleset(Record):
    """mode: on (files and scopes), scope-only, off. handled: the file system rights the ruleset restricts
    (empty: no file system part); rules: what is granted where; scopes: what is kept inside."""

    FIELDS = {"mode": "off", "handled": list, "rules": list, "scopes": list}
    __slots__ = tuple(FIELDS)
    NESTED = {"rules": Rule}


def ruleset(mode: str, mounts: list, rootfs: str | None = None, home_guards=(), revoked=()) -> Ruleset:
    """The ruleset for `mode` and these mount steps (plan.MountStep, in order), the root a host tree
    (`rootfs`, mounted writable) or rootsand's read-only tmpfs, and the home rule's guards (HomeGuard);
    `revoked`: REVOKE_VARIABLE's paths."""
    if mode == "off":
        return Ruleset(mode="off")
    if mode == "scope-only":
        return Ruleset(mode=mode, scopes=list(SCOPES))
    rules = {"/": (READ + (["execute"] + WRITE if rootfs else []),
                   "the root: --rootfs, writable" if rootfs else "the root: read-only, what is mounted shows")}
    for index, m in enumerate(mounts):
        if m.type in ("symlink", "dir") or m.kind == "absent":
            continue  # a link is no place of its own; a dir holds later mounts, which get their own rules
        if any(_below(m.dst, later.dst) for later in mounts[index + 1:] if later.type not in NOT_MOUNTS):
            continue  # hidden by a later mount, whose rule counts
        access = [] if "noexec" in m.flags else ["execute"]
        why = f"{m.type} {m.origin}".strip()
        guard = next((g for g in home_guards if g.mount == index and g.dst == m.dst), None)
        if m.type in WRITABLE_TYPES and "ro" not in m.flags and guard is None:
            access += WRITE
        elif m.type == "proc" or m.type == "dev":
            # /proc/self/oom_score_adj, /dev/null, a pty; nothing made there. truncate: a shell's `>` opens
            # with O_TRUNC, which Landlock judges on procfs' regular files
            access += ["write_file", "truncate"]
        if m.type == "dev":
            rules[_join(m.dst, "shm")] = (WRITE, f"{why}: its shm")
        if guard is not None:
            why += ": the home rule keeps it read-only"
            for w in guard.writable:
                rules[_join(m.dst, w)] = (["execute"] + WRITE, f"{why}, but {w}")
        if access:
            rules[m.dst] = (access, why)
    for path, (access, why) in rules.items():
        if any(_below(path, r) for r in revoked):
            rules[path] = ([a for a in access if a not in WRITE], f"{why} (write revoked: {REVOKE_VARIABLE})")
    return Ruleset(mode="on", handled=list(HANDLED), scopes=list(SCOPES),
                   rules=[Rule(path=path, access=_ordered(access), why=why) for path, (access, why) in rules.items()])


def _ordered(access: list[str]) -> list[str]:
    return [name for name in FS_RIGHTS if name in access]


def _join(dst: str, rel: str) -> str:
    return f"{dst.rstrip('/')}/{rel.strip('/')}"


def _below(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")


def unsupported(ruleset, version: int) -> list[str]:
    """The parts of `ruleset` a kernel of Landlock ABI `version` (libc.landlock_abi()) cannot enforce, as words
    for a note (-v, doctor)."""
    if ruleset.mode == "off":
        return []
    if version == 0:
        return ["all of it: this kernel has no Landlock"]
    missing = [name for name in ruleset.handled if FS_RIGHTS[name][1] > version]
    if ruleset.handled and version < 2:
        missing = ["the file system rules (ABI 1 refuses every rename across directories)"]
    return missing + [f"scope {name}" for name in ruleset.scopes if SCOPES[name][1] > version]


def describe(r: Ruleset) -> list[str]:
    """The ruleset as listing lines (`run --dry-run -v`, `inspect`)."""
    if r.mode == "off":
        return ["landlock: off"]
    lines = [f"landlock: {r.mode}; scoped: {', '.join(r.scopes).replace('_', ' ')}"]
    lines += [f"  landlock {rule.path:<28} {','.join(rule.access)}  [{rule.why}]" for rule in r.rules]
    return lines
