"""`rootsand export oci|seccomp|kube`: the plan `run` would carry out, written out for other engines by the
pure modules of rootsand/export/; here only the plan is made and the files are written."""

import json
import os
import sys

from rootsand.errors import RootsandError, warn


def run_options(command, given: dict):
    from rootsand.cli.options import RunOptions

    return RunOptions(command=list(command or []), **given)


def _resolved_plan(options):
    from rootsand.cli.runner import make_plan
    from rootsand.runtime import hostprep

    return hostprep.resolve(make_plan(options, options.verbose or options.debug))


def _kind(path: str) -> str | None:
    """"dir" or "file" (anything else that is there), or None when `path` is absent or a link is on its way: a
    home rule's writable exception is bound only then, as rootsand binds it (a link stays read-only)."""
    if os.path.realpath(path) != path or not os.path.exists(path):
        return None
    return "dir" if os.path.isdir(path) else "file"


def _say(the_plan, listed: list[str]) -> None:
    from rootsand.export.oci import said

    for line in said(the_plan):  # what `run` would say of this plan: it holds for the export too
        warn(line)
    for line in listed:
        warn(f"export: {line}")


def export_oci(options) -> int:
    """Write the bundle to the command's last argument, DIR: made when absent, refused when not empty."""
    from rootsand.export.oci import export_bundle
    from rootsand.runtime import hostprep

    if not options.command:
        raise RootsandError("name the bundle's directory: rootsand export oci [OPTIONS] -- COMMAND... DIR")
    target = os.path.abspath(options.command.pop())
    _check_target(target)
    the_plan = _resolved_plan(options)
    bundle = export_bundle(the_plan, os.uname().machine, target, _kind)
    listed = hostprep.make_missing(the_plan)  # the bind sources `run` makes, which the runtime needs too
    try:
        _write(target, bundle)
    except OSError as e:
        raise RootsandError(f"{target}: cannot write the bundle: {e.filename or target}: {e.strerror}") from None
    _say(the_plan, listed + bundle.listed)
    return 0


def _write(target: str, bundle) -> None:
    os.makedirs(target, mode=0o755, exist_ok=True)
    # Made here and now, not found: in a directory others can write, nothing of theirs is written into.
    root = os.path.join(target, "rootfs")
    os.mkdir(root, 0o755)
    os.mkdir(os.path.join(target, "files"), 0o755)
    for path, mode in bundle.dirs.items():
        os.makedirs(os.path.join(root, path), exist_ok=True)
        os.chmod(os.path.join(root, path), mode)  # not the umask's: runc gives a tmpfs its mount point's mode
    for path, link in bundle.links.items():
        os.makedirs(os.path.dirname(os.path.join(root, path)), mode=0o755, exist_ok=True)
        os.symlink(link, os.path.join(root, path))
    for path, content in bundle.files.items():
        os.makedirs(os.path.dirname(os.path.join(target, path)), mode=0o755, exist_ok=True)
        with open(os.path.join(target, path), "x") as f:
            f.write(content)
    # The environment is the command's, which may hold a token: the config is the user's only.
    fd = os.open(os.path.join(target, "config.json"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(bundle.config, f, indent=2)
        f.write("\n")


def _check_target(target: str) -> None:
    """The bundle's directory: new, or an empty directory of the user's (not a link to one)."""
    try:
        st = os.lstat(target)
    except FileNotFoundError:
        return
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or os.listdir(target):
        raise RootsandError(f"{target}: the bundle's directory must be a new or an empty directory of yours")


def export_seccomp(options) -> int:
    from rootsand.cli.runner import make_plan
    from rootsand.export import seccomp

    the_plan = make_plan(options)
    if the_plan.seccomp is None:
        raise RootsandError(f"profile {the_plan.profile} has no seccomp filter (security.seccomp = \"none\")")
    machine = os.uname().machine
    profile = seccomp.seccomp_object(the_plan.seccomp, machine, the_plan.compat_syscalls, comments=True)
    print(json.dumps(profile, indent=2))
    _say(the_plan, seccomp.differences(the_plan.seccomp, machine, the_plan.compat_syscalls))
    return 0


def export_kube(options, image: str) -> int:
    from rootsand.export import kube

    the_plan = _resolved_plan(options)
    pod, listed = kube.manifest(the_plan, image, _kind)
    print(json.dumps(pod, indent=2))
    sys.stdout.flush()
    _say(the_plan, listed)
    return 0
