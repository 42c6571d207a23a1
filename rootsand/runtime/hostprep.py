"""The plan against this host: the last decisions, made before anything runs and written into the Plan.

resolve() fills in Plan.resolved: every host path the sandbox is built from, resolved once and refusing
links a sandbox could have planted (guard/hostpaths.py); the host directories it can write; what the
protected paths cover (made, pinned or left absent); the git repositories checked after the run; where
setuid bits are cleared; each overlay's kind (the kernel's, fuse-overlayfs, or its lower dir read-only) and
the rule for /proc (a new procfs, else the outer one, said: PROC_KIND). `run --dry-run` prints the result;
the launcher makes it again under its registry lock, so what it records is what the host held when the
sandbox was built; the setup process and PID 1 then carry it out as it is (an error names the step that
fails), deciding nothing but what only trying tells: whether the kernel mounts a new procfs. The one change
to the host it plans, a bind source a profile has made when absent (`create`: the build profile's caches),
make_missing() carries out, in the launcher, after resolve().
"""

import os
import stat

from rootsand.config import host
from rootsand.errors import RootsandError

# /proc: a new procfs, or where the kernel refuses one in a user namespace (it does when mounts it counts as
# hiding parts of the outer procfs are locked over it, by rules that depend on the kernel's version and are
# not all visible from here: a container's masked paths, an outer sandbox's), the outer one as it is, which
# the setup process then says in a warning. Told apart only by trying, so the plan records the rule.
PROC_KIND = "new-or-outer"
GIT_ORIGIN_START = "sandbox.git = read-only"
OWN_RUNTIME_DIR = "own-runtime-dir"  # runtime/fs/build.py's: mounted after the protected paths
POD_HOSTS_ORIGIN = "--pod"  # config/plan.py's bind of a pod's hosts file  # config/spec.py GIT_ORIGIN: binds the spec checked, no link since


def resolve(the_plan):
    """`the_plan` with `resolved` filled in (see the module's docstring). Reads the host, changes nothing."""
    from rootsand.config.plan import Resolved, real_dirs
    from rootsand.guard.hostpaths import real_path, resolve_source

    writable = real_dirs(the_plan.writable, real_path)
    homes = tuple(the_plan.homes)
    rootfs = resolve_source(the_plan.rootfs, writable, "--rootfs", homes) if the_plan.rootfs else None
    if rootfs:
        writable.append(rootfs)  # mounted writable
    # Links are looked for below the writable directories as resolved and as written: a second sandbox that
    # swaps one for a link between realpath above and the walks below must not move where they are looked for
    judged = list(dict.fromkeys(writable + [os.path.normpath(t) for t in the_plan.writable if t != "/"]))
    notes, warnings, steps, made = [], [], [], []
    mountinfo = _mount_points() if any(step.type == "overlay" for step in the_plan.mounts) else []
    handover = the_plan.handover
    staged = handover.mount if handover and handover.staging else None
    staging = []
    if staged is not None:  # its name as planned is no directory of the host's: the one made is (_staging)
        writable = [w for w in writable if w != os.path.normpath(the_plan.mounts[staged].src)]
    for index, step in enumerate(the_plan.mounts):
        what = step.origin or f"mount {index + 1} ({step.type} on {step.dst})"
        if index == staged:  # made by the launcher once this is resolved (guard/handover.py)
            step, handover = _staging(step, handover, warnings)
            staging = [handover.staging] if handover.staging else []
        elif step.type in ("bind", "ro-bind", "dev-bind"):
            asked = os.path.normpath(step.src)
            step = step.replace(src=resolve_source(step.src, judged, what, homes))
            if step.origin.startswith(GIT_ORIGIN_START) and step.src != asked:
                # Checked by the spec as it was (the repository names the work tree back): a link swapped in
                # since would show something else (attack 6, g01)
                raise RootsandError(f"{what}: {asked} changed since it was checked (it leads to {step.src} now)",
                                    hint="another sandbox may be changing that directory")
            if step.create and not os.path.lexists(step.src) and _wanted(step.create, the_plan.env):
                if step.src == asked:
                    made.append(step.src)  # by the launcher, before the sandbox is built (make_missing)
                else:  # made only where it was asked for: not where a link a sandbox may have planted leads
                    warnings.append(f"{what}: {asked} is not made: a link on the way leads to {step.src}")
            else:
                _check_sources(step, what, [step.src])
                if step.origin.startswith("--device ") and os.path.exists(step.src):
                    _check_device(step.src, what)
        elif step.type == "overlay":
            upper = step.upper if step.upper in ("tmpfs", "none") else resolve_source(step.upper, judged, what + " upper", homes)
            work = step.work and resolve_source(step.work, judged, what + " work dir", homes)
            step = step.replace(lower=[resolve_source(p, judged, what, homes) for p in step.lower], upper=upper,
                                work=work)
            _check_sources(step, what, step.lower)
            step = step.replace(kind=_overlay_kind(step, what, the_plan.ids, mountinfo, notes, warnings))
        elif step.type == "proc":
            step = step.replace(kind=PROC_KIND)
        if step.optional and step.src not in made and not all(os.path.lexists(path) for path in _sources(step)):
            step = step.replace(kind="absent")  # skipped: optional, and not on this host (nor made for it)
        steps.append(step)
    if handover and handover.top:
        handover = handover.replace(top=resolve_source(handover.top, judged, "the current directory", homes))
    from rootsand.ops.registry import every_runtime_dir

    steps += hide_runtime_dirs(steps, rootfs, every_runtime_dir(), (the_plan.run_uid, the_plan.run_gid))
    _check_writable(steps, writable + staging)
    if the_plan.landlock.mode != "off":
        from rootsand.linux.libc import landlock_abi
        from rootsand.security.landlockrules import unsupported

        version = landlock_abi()
        notes += [f"landlock: not enforced on this kernel (ABI {version}): {what}"
                  for what in unsupported(the_plan.landlock, version)]
    resolved = Resolved(mounts=steps, rootfs=rootfs, writable=writable, notes=notes, warnings=warnings, made=made,
                        handover=handover,
                        setuid_tops=unguarded(writable, the_plan) if the_plan.setuid_bits else [])
    resolved = resolved.replace(protect=protected_nodes(the_plan, steps) if the_plan.protected else None)
    return the_plan.replace(resolved=resolved.replace(audit=_audit(the_plan, steps)))


def _staging(step, handover, warnings: list):
    """The staging directory for the parent of the current directory: beside the current directory on the
    host, reached through no link (one planted there, or swapped in, would put it and the products carried
    out of it elsewhere), with random letters in its name, so that nobody can take it first or plant a link
    where it will be (attack 6: s01, s02, s05). The launcher makes it; a parent the user cannot write stays
    read-only inside."""
    from rootsand.guard.hostpaths import real_path

    parent = os.path.dirname(os.path.normpath(step.src))
    why = None
    if real_path(parent) != parent:
        why = "is reached through a symbolic link"
    elif not os.access(parent, os.W_OK | os.X_OK):
        why = "is not writable for you"  # a build there fails on the host too
    if why:
        warnings.append(f"the parent of the current directory, {parent}, {why}: it is read-only in the sandbox, so "
                        "what the command writes there (such as dpkg-buildpackage's ../*.deb) fails")
        return step.replace(type="dir", src=None, flags=[]), handover.replace(staging=None, parent=None, mount=None)
    staging = f"{os.path.normpath(step.src)}.{os.urandom(8).hex()}"
    return step.replace(src=staging), handover.replace(staging=staging, parent=parent)


def _check_writable(steps: list, writable: list[str]) -> None:
    """What is mounted writable, as its walk resolved it, is one of the writable directories everything else
    was judged by (the setuid clearing, the status file, the links refused): else a link was swapped in or out
    meanwhile (attack round 5, r03)."""
    mounted = [s.src for s in steps if s.type in ("bind", "dev-bind") and s.kind != "absent"]
    mounted += [s.upper for s in steps if s.type == "overlay" and s.upper not in ("tmpfs", "none") and s.kind != "absent"]
    for path in mounted:
        if path != "/" and path not in writable:
            raise RootsandError(f"{path} changed while it was being looked at (it was {' or '.join(writable)})",
                                hint="another sandbox may be changing that directory")


def _check_device(path: str, what: str) -> None:
    """--device binds a character device, or a directory of them (/dev/dri): nothing else."""
    mode = os.stat(path).st_mode
    if not (stat.S_ISCHR(mode) or stat.S_ISDIR(mode)):
        raise RootsandError(f"{what}: {path} is not a character device (nor a directory of them)",
                            hint="--bind or --ro-bind binds files")


def _sources(step) -> list[str]:
    return step.lower if step.type == "overlay" else [step.src] if step.type in ("bind", "ro-bind", "dev-bind") else []


def hide_runtime_dirs(steps: list, rootfs: str | None, runtime_dirs: list[str], ids: tuple[int, int] = (0, 0)
                      ) -> list:
    """An empty tmpfs of the sandbox's own (its command's, `ids`, mode 0700: where a rootsand inside keeps its
    state) over each of rootsand's runtime directories on the host (ops/registry.every_runtime_dir) that a
    mount shows: a bind, an overlay's lower directory or the --rootfs tree that holds one, read-only
    or not (a profile binding $XDG_RUNTIME_DIR for a desktop's sockets, --bind /tmp). Found by identity
    (device and inode of the directory's ancestors), not by how a path is written (/var/run, //run, a link
    of the user's, /proc/self/root). A read-only mount is not enough: a connect() to a socket and an open()
    of a FIFO for writing pass it, and the registry's plans and the detached sandboxes' logs there are the
    user's other sandboxes'. A mount of one of them, or of what is in one, is refused. The steps to add."""
    from rootsand.config.plan import MountStep

    found = []  # (real path, its identity, {identity of each ancestor: its path})
    for path in runtime_dirs:
        real = os.path.realpath(path)
        ancestors = _ancestors(real)
        if ancestors:
            found.append((real, next(iter(ancestors)), ancestors))
    if not found:
        return []
    shown = [(s.dst, [s.src], s.origin or s.dst) for s in steps
             if s.type in ("bind", "ro-bind", "dev-bind") and s.src and s.kind != "absent"]
    shown += [(s.dst, s.lower, s.origin or s.dst) for s in steps if s.type == "overlay" and s.kind != "absent"]
    shown += [("/", [rootfs], "--rootfs")] if rootfs else []
    own = {identity: real for real, identity, _ in found}
    hidden, seen = [], set()
    for dst, sources, what in shown:
        for src in sources:
            if what == POD_HOSTS_ORIGIN:
                continue  # the pod's hosts file, rootsand's own, bound read-only as /etc/hosts (net/pod.py)
            _refuse_inside(src, own, what)
            try:
                st = os.stat(src)
            except OSError:
                continue
            for real, _, ancestors in found:
                top = ancestors.get((st.st_dev, st.st_ino))
                target = os.path.normpath(os.path.join(dst, os.path.relpath(real, top))) if top else None
                if target and target not in seen:
                    seen.add(target)
                    hidden.append(MountStep(type="tmpfs", dst=target, flags=["nosuid", "nodev", "noexec"],
                                            options={"mode": "0700", "uid": str(ids[0]), "gid": str(ids[1]),
                                                     "size": "8m"},
                                            kind=OWN_RUNTIME_DIR,
                                            origin=f"{real}: rootsand's runtime directory, hidden"))
    return hidden


def _refuse_inside(src: str, own: dict, what: str) -> None:
    real = os.path.realpath(src)
    for identity, here in _ancestors(real).items():
        if identity in own:
            where = ("rootsand's runtime directory" if here == real
                     else f"in rootsand's runtime directory {own[identity]}")
            raise RootsandError(f"{what}: {src} is {where}",
                                hint="no sandbox may see it: its sockets and FIFOs are open to whoever does")


def _ancestors(real: str) -> dict:
    """{(device, inode): path} of the real path `real` and of each directory above it, itself first; {} when
    a part of it cannot be looked at."""
    found, here = {}, real
    while True:
        try:
            st = os.stat(here)
        except OSError:
            return {}
        found[(st.st_dev, st.st_ino)] = here
        if here == "/":
            return found
        here = os.path.dirname(here)


def _wanted(create, env: dict) -> bool:
    """A bind's `create`: True, or a program's name, which must be on the command's PATH: a host without
    cargo gets no ~/.cargo/registry."""
    if create is True:
        return True
    return any(os.path.isfile(path) and os.access(path, os.X_OK)
               for path in (os.path.join(d, create) for d in env.get("PATH", "").split(":") if d.startswith("/")))


def make_missing(the_plan) -> list[str]:
    """Make the bind sources Resolved.made lists (the user's, mode 0700, missing parents too), following no
    link: resolve() resolved the path with the rules for planted links, so a link in the way now was planted
    since. The warnings to say: an optional bind whose source cannot be made is left out; another fails."""
    from rootsand.runtime.fs.primitives import make_dirs

    warnings = []
    for path in the_plan.resolved.made:
        index, step = next((i, s) for i, s in enumerate(the_plan.resolved.mounts) if s.src == path and s.create)
        what = step.origin or f"mount {index + 1} ({step.type} on {step.dst})"
        try:
            os.close(make_dirs(path, what, 0o700))
        except RootsandError as e:
            if not step.optional:
                raise
            warnings.append(f"{e.message}: it is left out")
    return warnings


def _check_sources(step, what: str, paths: list[str]) -> None:
    """A mount's host paths are there (or the mount is optional, and skipped); an overlay's lower ones are
    directories, and its upper one can be made. Checked here, on the host that runs it, not in the profile."""
    if step.optional:
        return
    for path in paths:
        if not os.path.lexists(path):
            from rootsand.runtime.fs.primitives import missing_source

            raise missing_source(what, path)
        if step.type == "overlay" and not os.path.isdir(path):
            raise RootsandError(f"{what}: overlay lower directory {path} is not a directory")
    upper = step.upper if step.type == "overlay" and step.upper not in ("tmpfs", "none") else None
    if upper and not (os.path.isdir(upper) or os.path.isdir(os.path.dirname(upper))):
        raise RootsandError(f"{what}: overlay upper directory {upper}: neither it nor its parent exists")


def _overlay_kind(step, what: str, ids, mountinfo: list[str], notes: list, warnings: list) -> str:
    """The kernel's overlay, unless a lower dir belongs to ids outside the sandbox's map (host root's
    /usr/local), which only fuse-overlayfs can copy up; or, where neither can be had, the lower dir read-only
    (an optional overlay without fuse-overlayfs; a nested sandbox's locked mounts below a lower dir)."""
    lowers = [p for p in step.lower if os.path.isdir(p)]
    if len(lowers) < len(step.lower):
        return "kernel"  # a lower dir is missing: an optional overlay is skipped, another fails naming it
    if any(_unmapped(p, ids) for p in lowers):
        if host.find_helper("fuse-overlayfs") and (os.access("/dev/fuse", os.R_OK | os.W_OK) or not step.optional):
            return "fuse"  # (without /dev/fuse it fails, saying so)
        if step.optional:
            # (the build profile's /usr/local in a nested sandbox, a container): read-only rather than no sandbox
            notes.append(f"overlay on {step.dst}: fuse-overlayfs or /dev/fuse is missing here: {step.dst} is read-only")
            return "read-only"
        raise RootsandError(f"{what}: overlay on {step.dst}: {lowers[0]} belongs to ids outside the sandbox, which "
                            "the kernel's overlay cannot copy up, and fuse-overlayfs is not installed",
                            hint="install the 'fuse-overlayfs' package")
    held = next((p for p in lowers if any(m.startswith(p.rstrip("/") + "/") for m in mountinfo)), None)
    if held and host.nesting():
        # The outer sandbox's mounts there (its protected paths) are locked for us, and the kernel overlays no
        # directory holding locked mounts: the top layer read-only instead, which keeps the promise that
        # nothing reaches the host (writes fail instead of vanishing).
        warnings.append(f"overlay on {step.dst}: {held} holds mounts of the sandbox this one runs in (its protected "
                        "paths), which the kernel does not overlay from a nested user namespace: "
                        f"{step.dst} is read-only instead")
        return "read-only"
    return "kernel"


def _unmapped(path: str, ids) -> bool:
    """A directory owned by a user or group outside the sandbox's id maps (it shows as the overflow id)."""
    st = os.stat(path)
    return not (_maps(ids.uid_lines, st.st_uid) and _maps(ids.gid_lines, st.st_gid))


def _maps(lines, outside_id: int) -> bool:
    return any(outside <= outside_id < outside + count for _, outside, count in lines)


def _mount_points() -> list[str]:
    """The mount points of this mount namespace (mountinfo's fifth field, its octal escapes decoded)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            points = [line.split()[4] for line in f]
    except OSError:
        return []
    if any("\\" in p for p in points):
        import re

        points = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), p) for p in points]
    return points


def unguarded(tops: list[str], the_plan) -> list[str]:
    """`tops` with each home the home rule keeps read-only replaced by its writable exceptions: the rest of
    it the sandbox could not write, so what changed there is none of its doing."""
    guarded = {guard.home: guard.writable for guard in the_plan.home_guards}
    out = []
    for top in tops:
        out += [os.path.join(top, rel) for rel in guarded[top] if _is_dir(os.path.join(top, rel))] \
            if top in guarded else [top]
    return list(dict.fromkeys(out))


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def protected_nodes(the_plan, steps: list) -> dict:
    """What security.protect covers on the host: for each path, the first component that is missing (PID 1
    makes it: a mount point to remove at exit), a file, or the path itself. The launcher writes it to the
    registry before anything is made, so a killed launcher's are known. For the paths that exist: their
    identity (leftovers.identity), checked at exit (leftovers.check_pinned)."""
    from rootsand.guard import leftovers

    covered, made, pinned, absent = [], [], [], []
    for item in the_plan.protected:
        top = steps[item.mount].src
        parts = [p for p in item.path.split("/") if p]
        if not _is_dir(top):
            continue
        path = top
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            path = os.path.join(path, part)
            if path in covered:
                break  # read-only already, with all below it
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                if item.placeholder:
                    covered.append(path)
                    made.append([path, not last or item.directory])
                elif path not in absent:  # left absent: whatever is there after the run was made during it
                    absent.append(path)   # (leftovers.check_absent)
                break
            except OSError:
                break
            if stat.S_ISLNK(mode):
                break  # PID 1 refuses it
            if last or not stat.S_ISDIR(mode):
                covered.append(path)
                try:
                    if not item.own:  # rootsand writes its own during the run: not a change from outside
                        pinned.append([path, *leftovers.identity(path)])
                except OSError:
                    pass  # gone since: PID 1 makes it, or finds what replaced it
                break
    return {"covered": covered, "made": made, "pinned": pinned, "absent": absent}


def _audit(the_plan, steps: list) -> dict | None:
    """The git check after the run (guard/gitaudit.py): the writable tops that hold a protected .git, the
    repositories known there now, and the profile's protected names, checked at any depth below them."""
    tops = unguarded(sorted({steps[item.mount].src for item in the_plan.protected
                             if item.path.split("/")[0] == ".git" and _is_dir(steps[item.mount].src)}), the_plan)
    if not tops:
        return None
    from rootsand.guard.gitaudit import known_git_dirs

    names = sorted({item.path.split("/")[0] for item in the_plan.protected
                    if not item.entry.startswith(("/", "~/")) and "/" not in item.path})
    return {"tops": tops, "known": known_git_dirs(tops), "names": names}
