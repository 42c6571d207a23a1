"""The last decisions before a run (runtime/hostprep.py), made from what the host shows, written into the
plan: each overlay's kind, /proc's rule (issue 19: no silent fallback in the runtime)."""

import os

import pytest

from rootsand.config.idmap import IdPlan
from rootsand.config.plan import MountStep
from rootsand.errors import RootsandError
from rootsand.runtime import hostprep


def test_proc_is_a_new_procfs_else_the_outer_one_said():
    """Only trying tells whether the kernel mounts a new procfs in a user namespace (its rules on the mounts
    covering parts of the outer one depend on its version: a systemd-nspawn container's covered files let it,
    an outer sandbox's masks do not), so the plan records the rule, and the setup process says which."""
    assert hostprep.PROC_KIND == "new-or-outer"


def _ids(uid: int, gid: int) -> IdPlan:
    return IdPlan(uid_lines=[[0, uid, 1]], gid_lines=[[0, gid, 1]])


def test_an_overlay_of_the_users_own_directory_is_the_kernels(tmp_path):
    step = MountStep(type="overlay", dst="/w", lower=[str(tmp_path)], upper="tmpfs")
    notes, warnings = [], []
    kind = hostprep._overlay_kind(step, "--overlay", _ids(os.getuid(), os.getgid()), [], notes, warnings)
    assert (kind, notes, warnings) == ("kernel", [], [])


def test_an_overlay_of_a_directory_of_unmapped_ids_needs_fuse(tmp_path, monkeypatch):
    """Host root's /usr/local seen from a map without root: the kernel's overlay cannot copy it up."""
    step = MountStep(type="overlay", dst="/w", lower=[str(tmp_path)], upper="tmpfs", optional=True)
    unmapped = _ids(os.getuid() + 1, os.getgid() + 1)
    monkeypatch.setattr(hostprep.host, "find_helper", lambda name: None)
    notes = []
    assert hostprep._overlay_kind(step, "profile x", unmapped, [], notes, []) == "read-only"
    assert notes == ["overlay on /w: fuse-overlayfs or /dev/fuse is missing here: /w is read-only"]
    with pytest.raises(RootsandError) as e:
        hostprep._overlay_kind(step.replace(optional=False), "profile x", unmapped, [], [], [])
    assert e.value.message.startswith(f"profile x: overlay on /w: {tmp_path} belongs to ids outside the sandbox")
    monkeypatch.setattr(hostprep.host, "find_helper", lambda name: "/usr/bin/fuse-overlayfs")
    assert hostprep._overlay_kind(step.replace(optional=False), "profile x", unmapped, [], [], []) == "fuse"


def _cache_plan(tmp_path, create, path_dirs):
    """A plan whose one mount binds tmp_path/home/.cache/tool, made when absent as `create` says."""
    from rootsand.config.plan import Plan

    src = str(tmp_path / "home" / ".cache" / "tool")
    step = MountStep(type="bind", dst=src, src=src, optional=True, create=create, origin="profile p, line 9")
    return Plan(mounts=[step], homes=[str(tmp_path / "home")], cwd=str(tmp_path / "work"), writable=[src],
                env={"PATH": ":".join(path_dirs)}, ids=_ids(os.getuid(), os.getgid()))


def test_a_missing_cache_is_planned_then_made_the_users_and_private(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "bin").mkdir()
    tool = tmp_path / "bin" / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    cache = tmp_path / "home" / ".cache" / "tool"
    # create = true: always; create = "PROGRAM": when the program is on the command's PATH
    for create, path_dirs, planned in ((True, [], True), ("tool", [str(tmp_path / "bin")], True),
                                       ("tool", ["/nonexistent", "relative"], False), (None, [], False)):
        resolved = hostprep.resolve(_cache_plan(tmp_path, create, path_dirs)).resolved
        assert resolved.made == ([str(cache)] if planned else []), create
    assert not (tmp_path / "home" / ".cache").exists()  # resolve() (and so --dry-run) makes nothing
    the_plan = hostprep.resolve(_cache_plan(tmp_path, True, []))
    assert hostprep.make_missing(the_plan) == []
    for path in (cache, cache.parent):
        st = os.stat(path)
        assert (st.st_uid, st.st_mode & 0o777) == (os.getuid(), 0o700), path
    assert hostprep.resolve(the_plan.replace(resolved=None)).resolved.made == []  # there now: bound as it is


def test_a_cache_is_not_made_through_a_link_swapped_in(tmp_path):
    (tmp_path / "home").mkdir()
    (tmp_path / "elsewhere").mkdir()
    the_plan = hostprep.resolve(_cache_plan(tmp_path, True, []))
    (tmp_path / "home" / ".cache").symlink_to(tmp_path / "elsewhere")  # after the check, before the making
    assert hostprep.make_missing(the_plan) == [
        f"profile p, line 9: cannot create {tmp_path}/home/.cache/tool: a symbolic link is in the way: it is left out"]
    assert os.listdir(tmp_path / "elsewhere") == []
    with pytest.raises(RootsandError, match="a symbolic link is in the way"):  # not optional: an error
        hostprep.make_missing(the_plan.replace(resolved=the_plan.resolved.replace(
            mounts=[the_plan.resolved.mounts[0].replace(optional=False)])))


def test_the_git_binds_are_known_by_their_origin():
    """hostprep refuses a link swapped into a git bind the spec checked; it knows them by their origin."""
    from rootsand.config import spec

    assert spec.GIT_ORIGIN.startswith(hostprep.GIT_ORIGIN_START)


def test_a_git_directory_swapped_for_a_link_since_the_spec_checked_it_is_refused(tmp_path):
    """Attack 6, g01: the spec checks that a work tree's git directory names it back; a second sandbox then
    swapped that directory for a link to a private one, which the bind showed. No link is followed for it."""
    from rootsand.config import spec
    from rootsand.config.plan import Plan

    (tmp_path / "private").mkdir()
    (tmp_path / "gitdir").symlink_to(tmp_path / "private")
    step = MountStep(type="ro-bind", src=str(tmp_path / "gitdir"), dst=str(tmp_path / "gitdir"),
                     origin=spec.GIT_ORIGIN)
    the_plan = Plan(mounts=[step], homes=[str(tmp_path / "home")], cwd=str(tmp_path / "work"),
                    ids=_ids(os.getuid(), os.getgid()))
    with pytest.raises(RootsandError) as e:
        hostprep.resolve(the_plan)
    assert e.value.message == (f"{spec.GIT_ORIGIN}: {tmp_path}/gitdir changed since it was checked (it leads to "
                               f"{tmp_path}/private now)")


def _bind(src: str, dst: str, kind: str = "ro-bind") -> MountStep:
    return MountStep(type=kind, src=src, dst=dst, origin=f"--{kind} {src}:{dst}")


def test_rootsands_runtime_directories_are_hidden_by_identity_wherever_a_mount_shows_them(tmp_path):
    """However the path is written (a link of the user's, //, /proc/self/root) and whatever shows it (a bind,
    an overlay's lower directory, --rootfs), a runtime directory gets an empty read-only tmpfs (attack 8, d07)."""
    outer = tmp_path / "run" / "user" / "1000"
    runtime = outer / "rootsand"
    (runtime / "detached").mkdir(parents=True)
    (tmp_path / "link").symlink_to(outer)
    steps = [_bind(str(tmp_path / "link"), "/a"), _bind(f"/proc/self/root{outer}", "/b", "bind"),
             _bind(f"/{outer}", "/c"), MountStep(type="overlay", dst="/d", lower=[str(outer)], upper="tmpfs"),
             _bind("/usr", "/usr")]
    hidden = hostprep.hide_runtime_dirs(steps, str(tmp_path), [str(runtime)], (1000, 1000))
    assert [(s.type, s.dst, s.flags, s.options, s.kind) for s in hidden] == [
        ("tmpfs", dst, ["nosuid", "nodev", "noexec"], {"mode": "0700", "uid": "1000", "gid": "1000", "size": "8m"},
         "own-runtime-dir")
        for dst in ("/a/rootsand", "/b/rootsand", "/c/rootsand", "/d/rootsand",
                    f"/{os.path.relpath(runtime, tmp_path)}")]
    assert hostprep.hide_runtime_dirs([_bind("/usr", "/usr")], None, [str(runtime)]) == []
    assert hostprep.hide_runtime_dirs(steps, None, [str(tmp_path / "absent")]) == []


@pytest.mark.parametrize("inside", ["rootsand", "rootsand/detached"])
def test_a_mount_of_a_runtime_directory_or_of_what_is_in_one_is_refused(tmp_path, inside):
    runtime = tmp_path / "rootsand"
    (runtime / "detached").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(runtime)
    for src in (str(tmp_path / inside), str(tmp_path / "alias" / os.path.relpath(tmp_path / inside, runtime))):
        with pytest.raises(RootsandError) as e:
            hostprep.hide_runtime_dirs([_bind(src, "/x")], None, [str(runtime)])
        assert e.value.message.startswith(f"--ro-bind {src}:/x: {src} is ")
        assert "rootsand's runtime directory" in e.value.message


def test_the_runtime_directories_of_every_environment_are_made_private_before_a_sandbox_starts(tmp_path):
    """cron's rootsand (no XDG_RUNTIME_DIR) binding /run/user/UID must not leave the desktop's runtime
    directory to be made later in the sandbox's view, nor make a placeholder the desktop's cannot use: each
    is made, 0700, and so covered (attack 9, r02)."""
    from rootsand.ops import registry

    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    registry.make_runtime_dirs({"XDG_RUNTIME_DIR": str(xdg)})
    made = os.stat(xdg / "rootsand")
    assert made.st_uid == os.getuid() and made.st_mode & 0o777 == 0o700
    assert str(xdg / "rootsand") == registry.every_runtime_dir({"XDG_RUNTIME_DIR": str(xdg)})[0]
