"""Reading the registry changes nothing; what killed launchers left is guard/leftovers.py's to sweep."""

import json
import os

import pytest

from rootsand.errors import RootsandError
from rootsand.guard import leftovers
from rootsand.linux import procfs
from rootsand.ops import registry


@pytest.fixture
def sandboxes(tmp_path, monkeypatch):
    """An empty registry of our own, in a runtime directory of this test's."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    return registry.registry_dir()


def dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def write(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def test_reads_leave_a_killed_launchers_entry_and_cleanup_retires_it(sandboxes):
    me = {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}
    write(os.path.join(sandboxes, "live.json"), {"name": "live", "launcher": me, "status": "running"})
    write(os.path.join(sandboxes, "gone.json"), {"name": "gone", "launcher": {"pid": dead_pid(), "start": 1}})
    half = os.path.join(sandboxes, f"gone.json.{dead_pid()}.tmp")
    open(half, "w").close()
    mine = os.path.join(sandboxes, f"live.json.{os.getpid()}.tmp")  # being written: not ours to remove
    open(mine, "w").close()
    before = sorted(os.listdir(sandboxes))

    assert [e["name"] for e in registry.entries()] == ["live"]
    assert registry.read_entry(os.path.join(sandboxes, "gone.json")) is None
    with pytest.raises(RootsandError, match="no sandbox named gone is running"):
        registry.find("gone")
    assert sorted(os.listdir(sandboxes)) == before

    assert leftovers.cleanup(explicit=True) == ["removed gone's entry (its launcher was killed)",
                                                f"removed {half} (half written by a command that was killed)"]
    assert sorted(os.listdir(sandboxes)) == ["live.json", os.path.basename(mine)]
    assert leftovers.cleanup(explicit=True) == []


def test_a_killed_launchers_name_is_claimed_again(sandboxes):
    write(os.path.join(sandboxes, "reused.json"), {"name": "reused", "launcher": {"pid": dead_pid(), "start": 1}})
    assert registry.claim("reused") is None  # held by the stale entry: the registry itself never removes it
    path = leftovers.claim("reused")
    assert registry.read_entry(path)["launcher"]["pid"] == os.getpid()
    with pytest.raises(RootsandError, match="a sandbox named reused is already running"):
        leftovers.claim("reused")


def test_a_killed_launchers_mount_points_go_unless_a_live_sandbox_covers_them(sandboxes, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / ".envrc").touch()
    (work / ".git").mkdir()
    (work / ".vscode").mkdir()
    (work / ".vscode" / "planted").touch()  # filled: not what was made, moved aside
    made = [[str(work / ".envrc"), False], [str(work / ".git"), True], [str(work / ".vscode"), True]]
    write(os.path.join(sandboxes, "gone.json"), {"name": "gone", "launcher": {"pid": dead_pid(), "start": 1},
                                                 "protect": {"made": made, "covered": [], "pinned": [], "absent": []}})
    me = {"pid": os.getpid(), "start": procfs.start_time(os.getpid())}
    write(os.path.join(sandboxes, "live.json"), {"name": "live", "launcher": me,
                                                 "protect": {"covered": [str(work / ".git")], "made": []}})
    registry.entries()
    assert sorted(os.listdir(work)) == [".envrc", ".git", ".vscode"]
    done = leftovers.cleanup(explicit=True)
    assert done == ["removed gone's entry (its launcher was killed)",
                    f"removed {work}/.envrc (an empty mount point made for a sandbox)"]
    assert [name.split(".rootsand-quarantine-")[0] for name in sorted(os.listdir(work))] == [".git", ".vscode"]
    assert leftovers.LEDGER in os.listdir(sandboxes)  # .git: the live one covers it
    os.unlink(os.path.join(sandboxes, "live.json"))
    assert leftovers.cleanup(explicit=True) == [f"removed {work}/.git (an empty mount point made for a sandbox)"]
    assert leftovers.LEDGER not in os.listdir(sandboxes)


def test_an_interrupted_sweep_leaves_the_killed_launchers_entry_for_the_next_one(sandboxes, tmp_path, monkeypatch):
    """Attack round 4: the sweep removed every stale entry before it checked any. A sandbox that made its git
    check slow, and a ^C on the next start that looked stuck, lost the check for good: the planted repository
    stayed. The entry goes only once its checks are done, and the mount points it names are in the ledger
    before anything is removed."""
    from rootsand.guard import gitaudit

    work = tmp_path / "work"
    (work / ".envrc").mkdir(parents=True)
    entry = {"name": "gone", "launcher": {"pid": dead_pid(), "start": 1},
             "protect": {"made": [[str(work / ".envrc"), True]], "covered": [], "pinned": [], "absent": [],
                         "audit": {"tops": [str(work)], "since": 1, "known": [], "names": []}}}
    write(os.path.join(sandboxes, "gone.json"), entry)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(gitaudit, "audit", interrupted)
        with pytest.raises(KeyboardInterrupt):
            leftovers.cleanup()
    assert "gone.json" in os.listdir(sandboxes)  # checked again by the next sweep
    with open(os.path.join(sandboxes, leftovers.LEDGER)) as f:
        assert json.load(f)["made"] == [[str(work / ".envrc"), True]]
    assert leftovers.cleanup() == ["removed gone's entry (its launcher was killed)",
                                   f"removed {work}/.envrc (an empty mount point made for a sandbox)"]
    assert sorted(os.listdir(sandboxes)) == []
