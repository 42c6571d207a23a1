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
