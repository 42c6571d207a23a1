"""The runtime directory without $XDG_RUNTIME_DIR when /tmp/rootsand-UID is not ours to use (issue 18,
finding 6): another user can take that name in the sticky /tmp, and no one but root can remove theirs."""

import os
import shutil
import uuid

import pytest

from rootsand.errors import RootsandError
from rootsand.linux import procfs
from rootsand.ops import registry


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A /tmp/rootsand-N of a uid that no test shares (procfs.host_uid names it), removed afterwards."""
    fake = 3_000_000_000 + uuid.uuid4().int % 1_000_000_000
    path = f"/tmp/rootsand-{fake}"
    monkeypatch.setattr(procfs, "host_uid", lambda uid: fake)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(registry, "_warned", set(), raising=False)  # once per process: each test anew
    yield path
    base = os.path.basename(path)
    for name in os.listdir("/tmp"):
        if name == base or name.startswith(base + "-"):
            full = os.path.join("/tmp", name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full)
            else:
                os.unlink(full)


def test_a_free_name_is_taken_and_no_key_is_made(shared, tmp_path, capsys):
    assert registry.runtime_dir() == shared
    assert os.stat(shared).st_mode & 0o777 == 0o700
    assert not os.path.exists(tmp_path / "state") and capsys.readouterr().err == ""


@pytest.mark.parametrize("taken", ["link to a directory of yours", "file", "directory open to others"])
def test_a_name_that_is_no_private_directory_falls_back_with_one_warning(shared, tmp_path, capsys, taken):
    victim = tmp_path / "victim"
    victim.mkdir(mode=0o700)
    if taken.startswith("link"):
        os.symlink(victim, shared)
    elif taken == "file":
        open(shared, "w").close()
    else:
        os.mkdir(shared)
        os.chmod(shared, 0o777)
    first = registry.runtime_dir()
    assert registry.runtime_dir() == first and registry.registry_dir() == first + "/sandboxes"
    assert first.startswith(shared + "-") and len(first) == len(shared) + 17
    st = os.lstat(first)
    assert os.path.isdir(first) and not os.path.islink(first)
    assert st.st_uid == os.getuid() and st.st_mode & 0o777 == 0o700
    assert os.listdir(victim) == []  # nothing was made through the link
    why = {"file": "is not a directory", "directory open to others": "is open to others (mode 0777)"}.get(
        taken, "is a symbolic link")
    assert capsys.readouterr().err == f"rootsand: warning: {shared} {why}: using {first}\n"
    key = tmp_path / "state" / "rootsand" / "runtime-key"
    assert os.stat(key).st_mode & 0o777 == 0o600 and len(key.read_text()) == 32


def test_the_fallback_stays_when_the_name_is_given_back(shared, tmp_path, capsys):
    """Else the sandboxes started meanwhile would vanish from ps, stop and the sweeps."""
    os.symlink(tmp_path, shared)
    fallback = registry.runtime_dir()
    os.unlink(shared)
    capsys.readouterr()
    assert registry.runtime_dir() == fallback
    assert not os.path.lexists(shared) and capsys.readouterr().err == ""


def test_the_fallback_name_is_no_one_elses_to_know(shared, tmp_path, monkeypatch):
    """A name made from a key of ours and the boot: another key (user) gives another name."""
    os.symlink(tmp_path, shared)
    first = registry.runtime_dir()
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other"))
    assert registry.runtime_dir() not in (first, shared)


def test_a_key_others_can_read_is_refused(shared, tmp_path):
    os.symlink(tmp_path, shared)
    registry.runtime_dir()
    key = tmp_path / "state" / "rootsand" / "runtime-key"
    key.chmod(0o644)
    with pytest.raises(RootsandError) as e:
        registry.runtime_dir()
    assert str(e.value) == f"{shared} is a symbolic link, and {key} is not a key of yours that only you can read"
    assert e.value.hint == f"remove {key} (a new one is made), or set XDG_RUNTIME_DIR to a directory only you can write"


def test_a_fallback_that_is_not_ours_is_never_used(shared, tmp_path):
    """The fallback's name taken too (a link here): an error that says both, and how to get a new name."""
    os.symlink(tmp_path, shared)
    fallback = registry.runtime_dir()
    os.rmdir(fallback)
    os.symlink(tmp_path, fallback)
    with pytest.raises(RootsandError) as e:
        registry.runtime_dir()
    key = tmp_path / "state" / "rootsand" / "runtime-key"
    assert str(e.value) == f"{shared} is a symbolic link, and {fallback} is a symbolic link"
    assert e.value.hint == (f"remove {key} (a new name is made), "
                            "or set XDG_RUNTIME_DIR to a directory only you can write")
    key.unlink()
    assert registry.runtime_dir() not in (fallback, shared)
    assert os.listdir(tmp_path) == ["state"]  # nothing made through the links


def test_a_line_about_the_host_is_said_once_per_boot_and_text(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    said = [registry.first_this_boot("limits", text) for text in ("no cgroup", "no cgroup", "cpu too", "cpu too")]
    assert said == [True, False, True, False]
    mark = tmp_path / "run" / "rootsand" / "said-limits"
    assert os.stat(mark).st_mode & 0o777 == 0o600
    monkeypatch.setattr(procfs, "read_sysctl", lambda path: "another boot")
    assert registry.first_this_boot("limits", "cpu too") is True
