"""bubblewrap's command line as a Plan (config/bwrap.py): parsed in order with bwrap's rules and defaults."""

import json
import os
import tomllib

import pytest

from rootsand.config import bwrap
from rootsand.config.plan import Plan

ENV = {"HOME": "/home/u", "PATH": "/usr/bin:/bin", "FOO": "1"}
SELF = ["/usr/bin/python3", "-m", "rootsand.cli.bwrap"]


def parse(*args, fds=None):
    fds = fds or {}
    return bwrap.parse(list(args), ENV, lambda fd: fds[fd], lambda fd: f"/fd{fd}")


def plan(*args, fds=None, uid=1000):
    return bwrap.plan(parse(*args, fds=fds), uid, uid, 4242, "/work", 40, SELF)


def test_argument_order_is_mount_order_and_defaults_are_bubblewraps():
    p = plan("--ro-bind", "/usr", "/usr", "--tmpfs", "/tmp", "--dir", "/tmp/a", "--symlink", "usr/bin", "/bin",
             "--bind", "rel", "/x", "true")
    assert [(m.type, m.dst) for m in p.mounts] == [("ro-bind", "/usr"), ("tmpfs", "/tmp"), ("dir", "/tmp/a"),
                                                   ("symlink", "/bin"), ("bind", "/x")]
    assert p.mounts[4].src == "/work/rel"  # relative to the current directory, as bwrap resolves it
    assert p.mounts[1].options == {"mode": "755"} and p.mounts[0].flags == ["ro", "nosuid", "nodev"]
    # nothing unshared but what mounting needs; environment, ids and the current directory kept
    assert p.namespaces == ["user", "mount"] and p.network.mode == "host"
    assert p.env == ENV and (p.run_uid, p.run_gid) == (1000, 1000) and p.capabilities == []
    assert p.ids.uid_lines == [(1000, 1000, 1)] and p.ids.uid_helper is None and p.ids.deny_setgroups
    assert (p.chdir, p.chdir_else, p.set_pwd) == ("/work", ["/home/u", "/"], True)
    assert p.etc_files == {} and p.seccomp is None and p.profile == "bwrap" and p.name == "bwrap-4242"
    assert Plan.from_json(json.loads(json.dumps(p.to_json()))) == p  # the registry stores it


def test_unshare_options_uid_and_caps():
    p = plan("--unshare-all", "--share-net", "--unshare-user", "--uid", "0", "--gid", "0", "--cap-add", "ALL",
             "--cap-drop", "CAP_KILL", "true", uid=1000)
    assert p.namespaces == ["user", "mount", "pid", "uts", "ipc", "cgroup"]
    assert p.ids.uid_lines == [(0, 1000, 1)] and p.run_uid == 0
    assert "CAP_SYS_ADMIN" in p.capabilities and "CAP_KILL" not in p.capabilities
    # root inside keeps nothing unless asked, but for bubblewrap run by root
    assert plan("--unshare-user", "--uid", "0", "true", uid=1000).capabilities == []
    assert "CAP_CHOWN" in plan("--cap-drop", "CAP_KILL", "true", uid=0).capabilities
    assert plan("--unshare-net", "true").network.mode == "none"


def test_double_dash_and_option_looking_commands():
    assert parse("--", "--dev-bind", "/dev", "/dev", "sh").command == ["--dev-bind", "/dev", "/dev", "sh"]
    assert parse("--bind", "/", "/", "ls", "--tmpfs", "/x").command == ["ls", "--tmpfs", "/x"]
    assert plan("/proc/self/exe", "--bind", "/", "/", "true").argv == SELF + ["--bind", "/", "/", "true"]


def test_args_from_an_fd_are_put_in_place():
    p = parse("--args", "3", "--dir", "/b", "true", fds={3: b"--dir\0/a\0--setenv\0X\0y z\0"})
    assert [o["dst"] for o in p.ops] == ["/a", "/b"] and p.env["X"] == "y z" and p.command == ["true"]


def test_env_operations_in_order():
    p = parse("--setenv", "A", "1", "--unsetenv", "FOO", "--clearenv", "--setenv", "B", "2", "true")
    assert p.env == {"B": "2"}  # $PWD too is set afresh, where the command starts


def test_modes_of_made_files_and_their_parents():
    p = plan("--perms", "0640", "--file", "0", "/f", "--file", "0", "/g", "--bind-data", "0", "/h",
             "--perms", "0700", "--ro-bind-data", "0", "/i", "--perms", "1777", "--dir", "/d/e",
             "--size", "4096", "--perms", "01777", "--tmpfs", "/t", "--chmod", "700", "/d", "true",
             fds={0: b"data"})
    modes = [(m.type, m.mode, m.parents) for m in p.mounts]
    assert modes == [("file", 0o640, 0o750), ("file", 0o666, 0o755), ("data", 0o600, 0o700),
                     ("data", 0o700, 0o700), ("dir", 0o1777, 0o755), ("tmpfs", 0o1777, None), ("chmod", 0o700, None)]
    assert p.mounts[0].content == "data" and p.mounts[3].flags == ["ro"] and p.mounts[2].flags == []
    assert p.mounts[5].options == {"mode": "1777", "size": "4096"}


def test_proc_is_the_hosts_unless_the_pid_namespace_is_new():
    assert [(m.type, m.src) for m in plan("--proc", "/proc", "true").mounts] == [("bind", "/proc")]
    step = plan("--unshare-pid", "--proc", "/proc", "true").mounts[0]
    assert step.type == "proc" and "sysrq-trigger" in step.read_only


def test_overlays_top_first_and_read_only():
    steps = plan("--overlay-src", "l1", "--overlay-src", "/l2", "--overlay", "up", "wk", "/o",
                 "--overlay-src", "/a", "--overlay-src", "/b", "--ro-overlay", "/r", "true").mounts
    assert (steps[0].lower, steps[0].upper, steps[0].work) == (["/l2", "/work/l1"], "/work/up", "/work/wk")
    assert (steps[1].lower, steps[1].upper, "ro" in steps[1].flags) == (["/b", "/a"], "none", True)


@pytest.mark.parametrize("args,message", [
    (["--perms", "0640", "--perms", "0640", "--tmpfs", "/a"], "--perms given twice for the same action"),
    (["--size", "0", "--tmpfs", "/a"], "--size takes a non-zero number of bytes"),
    (["--size", "123bogus", "--tmpfs", "/a"], "--size takes a non-zero number of bytes"),
    (["--size", " -1", "--tmpfs", "/a"], "--size takes a non-zero number of bytes"),
    (["--size", "18446744073709551616", "--tmpfs", "/a"], "--size takes a non-zero number of bytes"),
    (["--size", "9223372036854775809", "--tmpfs", "/a"], "--size (for tmpfs) is limited to 9223372036854775807"),
    (["--size", "1", "--dir", "/a"], "--size must be followed by --tmpfs"),
    (["--perms", "0640", "--bind", "/a", "/b"], "--perms must be followed by an option that creates a file"),
    (["--perms", "8"], "--perms takes an octal argument <= 07777"),
    (["--overlay", "u", "w", "/a"], "--overlay requires at least one --overlay-src"),
    (["--overlay-src", "/a", "--ro-overlay", "/a"], "--ro-overlay requires at least two --overlay-src"),
    (["--overlay-src", "/a", "--chdir", "/"], "--overlay-src must be followed by another --overlay-src or one "
                                               "of --overlay, --tmp-overlay, or --ro-overlay"),
    (["--bind"], "--bind takes two arguments"),
    (["--uid", "0"], "Specifying --uid requires --unshare-user or --userns"),
    (["--as-pid-1"], "Specifying --as-pid-1 requires --unshare-pid"),
    (["--cap-add", "CAP_NOPE"], "unknown cap: CAP_NOPE"),
    (["--frobnicate"], "Unknown option --frobnicate"),
    (["--info-fd", "x"], "Invalid fd: x"),
])
def test_what_bwrap_dies_on(args, message):
    with pytest.raises(bwrap.BwrapError) as e:
        parse(*args, "true")
    assert str(e.value) == message


@pytest.mark.parametrize("option", ["--userns", "--pidns", "--userns-block-fd"])
def test_what_needs_bubblewrap_itself_is_refused_saying_so(option):
    with pytest.raises(bwrap.BwrapError) as e:
        parse(option, "3", "true")
    assert str(e.value).startswith(f"{option} is not supported by rootsand's bwrap: ")


def test_seccomp_programs_in_order():
    p = plan("--add-seccomp-fd", "3", "--add-seccomp-fd", "4", "true", fds={3: b"\x06" + bytes(7), 4: bytes(16)})
    assert p.seccomp_bpf == ["0600000000000000", "00" * 16]
    for data, message in ((b"123", "Invalid seccomp data, must be multiple of 8"),):
        with pytest.raises(bwrap.BwrapError, match=message):
            parse("--seccomp", "3", "true", fds={3: data})
    # the options first, then the fds, as bubblewrap reads them
    with pytest.raises(bwrap.BwrapError, match="--seccomp cannot be combined with --add-seccomp-fd"):
        parse("--add-seccomp-fd", "3", "--seccomp", "4", "true", fds={})
    with pytest.raises(bwrap.BwrapError, match="Can't read seccomp data: Bad file descriptor"):
        bwrap.parse(["--seccomp", "9", "true"], ENV, lambda fd: os.read(-1, 1))


def test_a_second_chdir_is_warned_about_as_bwrap_does():
    assert parse("--chdir", "/a", "--chdir", "/b", "true").warnings == ["Only the last --chdir option will take effect"]


def test_missing_bind_sources_but_try_ones():
    p = parse("--bind-try", "/nope", "/a", "--ro-bind", "/", "/", "--bind", "/nope2", "/b", "true")
    assert bwrap.sources_missing(p, os.path.lexists) == "/nope2"


def test_the_console_script_is_declared_and_lean():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert scripts["rootsand-bwrap"] == "rootsand.cli.bwrap:main"
    import ast
    import rootsand.cli.bwrap as front

    with open(front.__file__) as f:
        imported = {n.names[0].name if isinstance(n, ast.Import) else n.module for n in ast.walk(ast.parse(f.read()))
                    if isinstance(n, (ast.Import, ast.ImportFrom))}
    assert not any(name and name.split(".")[0] in ("typer", "click") for name in imported)
