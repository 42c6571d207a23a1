"""The home rule as planned (homerule.py): which binds turn read-only, which homes get a guard, which
directories of PATH and of rootsand's own become protected paths. Pure: no file is looked at."""

import pytest

from rootsand.config.homerule import plan_home, read_only_reason
from rootsand.config.model import Mount
from rootsand.config.hostfiles import own_dirs
from rootsand.config.spec import SandboxSpec
from rootsand.errors import RootsandError

HOME = "/home/alice"


def spec(mounts, cwd="/home/alice/src", path=("/usr/bin", "/home/alice/bin", "/home/alice/.local/bin"),
         home_writable=(), placeholders=False, env=None):
    env = env if env is not None else {"HOME": HOME}
    return SandboxSpec(cwd=cwd, homes=(HOME,), mounts=mounts, host_path=tuple(path), home_writable=list(home_writable),
                       placeholders=placeholders, own_dirs=own_dirs(env, (HOME,)))


def bind(src, dst=None, origin="--bind"):
    return Mount(type="bind", src=src, dst=dst or src, origin=origin)


def test_a_bind_inside_a_dot_entry_turns_read_only_with_a_note():
    s = spec([bind("/home/alice/.config/nvim")])
    mounts, guards, protected, notes = plan_home(s, s.mounts)
    assert [m.type for m in mounts] == ["ro-bind"] and guards == [] and protected == []
    assert notes == ["--bind: /home/alice/.config/nvim is inside /home/alice/.config, where programs on your host find "
                     "what to run: it is read-only in the sandbox (--unprotect ~/.config/nvim makes it writable)"]


def test_an_exception_keeps_a_bind_inside_a_dot_entry_writable():
    s = spec([bind("/home/alice/.cache/pip")], home_writable=["~/.cache/pip"])
    assert [m.type for m in plan_home(s, s.mounts)[0]] == ["bind"]
    s = spec([bind("/home/alice/.cache")], home_writable=["~/.cache/pip"])  # the exception is below it: not all of it
    assert [m.type for m in plan_home(s, s.mounts)[0]] == ["ro-bind"]


def test_rootsands_own_configuration_is_read_only_whatever_the_exceptions():
    s = spec([bind("/home/alice/.config/rootsand/profiles")], home_writable=["~/.config"])
    mounts, _, _, notes = plan_home(s, s.mounts)
    assert mounts[0].type == "ro-bind"
    assert "is rootsand's own configuration or state (/home/alice/.config/rootsand)" in notes[0]
    assert "--unprotect" not in notes[0]


def test_rootsands_own_configuration_elsewhere_is_protected_with_a_placeholder():
    s = spec([bind("/work", origin="--bind")], env={"HOME": HOME, "XDG_CONFIG_HOME": "/work/cfg"})
    _, guards, protected, _ = plan_home(s, s.mounts)
    assert guards == []
    assert protected == [{"mount": 0, "path": "cfg/rootsand", "dst": "/work/cfg/rootsand", "directory": True,
                          "entry": "/work/cfg/rootsand (rootsand)", "placeholder": True, "own": True}]


def test_a_bind_of_home_gets_a_guard():
    s = spec([bind(HOME, origin="profile p, line 3")], cwd=HOME, home_writable=["~/.cache/pip"])
    mounts, guards, protected, notes = plan_home(s, s.mounts)
    assert mounts[0].type == "bind"
    assert [(g.mount, g.home, g.dst, g.writable) for g in guards] == [(0, HOME, HOME, [".cache/pip"])]
    assert protected == []  # ~/bin on PATH is read-only with the rest of the home
    assert notes == ["running from your home directory: it is read-only in the sandbox, so nothing there can be "
                     "made or changed for your host to run later; run from a project directory in it, or "
                     "--unprotect ~/DIR to make one writable (writable: ~/.cache/pip)"]


def test_path_directories_in_a_bound_directory_are_protected():
    s = spec([bind("/home/alice/go", origin="cwd")], cwd="/home/alice/go", path=("/home/alice/go/bin",))
    _, guards, protected, _ = plan_home(s, s.mounts)
    assert guards == [] and [(p["path"], p["placeholder"], p["own"]) for p in protected] == [("bin", False, False)]


def test_a_bind_above_home_guards_the_home_inside_it():
    s = spec([bind("/home", dst="/h")], cwd="/tmp/x")
    _, guards, _, _ = plan_home(s, s.mounts)
    assert [(g.home, g.dst) for g in guards] == [(HOME, "/h/alice")]


def test_a_hidden_bind_gets_no_guard():
    s = spec([bind(HOME), Mount(type="tmpfs", dst=HOME, origin="--tmpfs")], cwd=HOME)
    assert plan_home(s, s.mounts)[1] == []


def test_a_project_directory_in_home_is_left_alone():
    s = spec([bind("/home/alice/src", origin="cwd")])
    assert plan_home(s, s.mounts) == (s.mounts, [], [], [])


def test_an_overlay_whose_upper_is_in_a_dot_entry_is_refused():
    s = spec([Mount(type="overlay", lower=["/usr"], upper="/home/alice/.local/up", dst="/usr", origin="--overlay")])
    with pytest.raises(RootsandError, match="the overlay's upper directory /home/alice/.local/up is inside"):
        plan_home(s, s.mounts)


def test_path_directories_inside_home_are_read_only_binds():
    assert read_only_reason("/home/alice/bin/tools", spec([])) == ("is inside /home/alice/bin, on your PATH or an XDG home: programs on your host run what is there", True)
    assert read_only_reason("/home/alice/src", spec([])) is None
    assert read_only_reason("/usr/bin", spec([])) is None  # PATH outside a home is the system's, read-only anyway


def test_xdg_homes_set_to_plain_directories_in_home_are_read_only():
    s = spec([bind("/home/alice/work")], cwd="/home/alice/work").replace(xdg_dirs=("/home/alice/work/conf", "/var/xdg"))
    _, _, protected, _ = plan_home(s, s.mounts)
    assert [p["path"] for p in protected] == ["conf"]
    assert read_only_reason("/home/alice/work/conf/autostart", s) == (
        "is inside /home/alice/work/conf, on your PATH or an XDG home: programs on your host run what is there", True)


def test_rootsands_runtime_fallback_in_tmp_counts_as_its_own():
    import os
    s = spec([])
    assert read_only_reason(f"/tmp/rootsand-{os.getuid()}-0123456789abcdef/sandboxes", s)[1] is False
    assert read_only_reason(f"/tmp/rootsand-{os.getuid()}0", s) is None  # another uid's


def test_the_runtime_directorys_fallback_is_among_rootsands_own(tmp_path, monkeypatch):
    """Fifth attack, finding 4: with /tmp/rootsand-UID taken, the registry lives in /tmp/rootsand-UID-NAME."""
    import os

    from rootsand.linux import procfs
    from rootsand.ops import registry

    key = tmp_path / "rootsand" / "runtime-key"
    key.parent.mkdir()
    key.write_text("0123456789abcdef0123456789abcdef")
    key.chmod(0o600)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    fallback = registry._fallback_name(f"/tmp/rootsand-{procfs.host_uid(os.getuid())}", "0123456789abcdef0123456789abcdef")
    s = spec([bind("/tmp")], cwd="/tmp/x")
    assert fallback in s.own_dirs
    _, _, protected, _ = plan_home(s, s.mounts)
    assert {"path": os.path.relpath(fallback, "/tmp"), "own": True, "placeholder": True}.items() <= next(
        p for p in protected if p["dst"] == fallback).items()


def test_the_checks_after_a_run_start_at_the_whole_second_on_coarse_file_systems(tmp_path):
    """Fifth attack, finding 5: file systems that keep whole seconds."""
    import os
    import time

    from rootsand.runtime.launcher import _since

    fine, coarse = tmp_path / "fine", tmp_path / "coarse"
    fine.mkdir()
    coarse.mkdir()
    os.utime(coarse, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000))  # mtime whole; ctime below
    now = time.time()
    assert now - 0.1 < _since([str(fine)]) < now
    st = os.lstat(coarse)
    if st.st_ctime_ns % 1_000_000_000:  # this file system keeps fractions: its ctime says so
        assert _since([str(coarse)]) != float(int(_since([str(coarse)])))
    assert _since([str(tmp_path / "missing")]) < time.time()
