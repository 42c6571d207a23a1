"""The plan stage without namespaces: golden plans of the built-in profiles on fixed host facts, the JSON
round trip, mount order and origins, home exposure, limits, resolv.conf, publish, and the resolution of
destinations inside the new root."""

import builtins
import json
import os
import subprocess

import pytest

from rootsand.config import model, plan, profile, spec
from rootsand.config.idmap import SubidRange
from rootsand.config.plan import HostFacts, Plan
from rootsand.errors import RootsandError
from rootsand.cli.options import RunOptions
from rootsand.runtime.fs.build import FileSystem

BUILTINS = ["agent", "build", "default", "fakeroot", "net", "untrusted"]
GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
FACTS = HostFacts(uid=1000, gid=1000, pid=4242,
                  subuids=[SubidRange(100000, 65536)], subgids=[SubidRange(100000, 65536)],
                  newuidmap="/usr/bin/newuidmap", newgidmap="/usr/bin/newgidmap",
                  resolv_conf="nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.org\n",
                  inotify_instances=128, inotify_watches=65536, page_size=4096, last_cap=40)


@pytest.fixture
def where(tmp_path, monkeypatch):
    """A fixed user: a home and a project directory, no user profiles."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "project").mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    return tmp_path


def make_spec(where, profile_name="default", **options):
    home, cwd = str(where / "home"), str(where / "home" / "project")
    variables = profile.Variables(cwd=cwd, home=home, user="alice", uid=1000, gid=1000, xdg_runtime_dir=None,
                                  env={})
    loaded = profile.load(profile_name, variables)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "USER": "alice", "TERM": "xterm", "TOKEN": "secret"}
    return spec.from_profile(loaded, RunOptions(profile=profile_name, **options), env, cwd, 2, (home,))


def portable(the_plan: Plan, where) -> dict:
    """The plan's JSON with this run's paths as placeholders, and the seccomp rules as names and errnos
    (their arguments hold architecture-specific numbers)."""
    data = the_plan.to_json()
    data["seccomp"] = sorted({f"{r['syscall']}:{r['errno']}" for r in data["seccomp"]}) if data["seccomp"] else None
    text = json.dumps(data, indent=1, sort_keys=True)
    return json.loads(text.replace(str(where), "{tmp}").replace(os.path.dirname(profile.lookup.builtin_dir()),
                                                               "{package}"))


@pytest.mark.parametrize("name", BUILTINS)
def test_golden_plan(where, name):
    got = portable(plan.plan(make_spec(where, name), FACTS), where)
    path = os.path.join(GOLDEN, f"plan-{name}.json")
    if os.environ.get("ROOTSAND_UPDATE_GOLDEN"):
        os.makedirs(GOLDEN, exist_ok=True)
        with open(path, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(path) as f:
        assert got == json.load(f), f"plan of {name} changed: ROOTSAND_UPDATE_GOLDEN=1 rewrites {path}"


@pytest.mark.parametrize("name", BUILTINS)
def test_plan_round_trips_through_json(where, name):
    the_plan = plan.plan(make_spec(where, name, publish=["8080:80"], net="slirp"), FACTS)
    again = Plan.from_json(json.loads(json.dumps(the_plan.to_json())))
    assert again == the_plan
    assert again.mounts[0] == the_plan.mounts[0] and isinstance(again.mounts[0], plan.MountStep)
    assert again.network.publish == [model.PortForward(host_addr="127.0.0.1", host_port=8080, guest_port=80)]


class NoFiles:
    """A stand-in for hostfiles.HostFiles: the spec stage's only way to the user's files."""

    def realpath(self, path):
        return path

    def hook_dirs(self, writable, homes, env):
        return [".husky/_/"]

    def dot_links(self, homes):
        return {}

    def git_dirs(self, directory, homes):
        return "/home/alice", ["/home/alice/.git"], None

    def own_dirs(self, env, homes):
        return ("/home/alice/.config/rootsand",)

    def rule_file(self, path):
        return []


def test_the_build_profile_shows_the_repository_of_a_subdirectory_read_only(where):
    """sandbox.git: the git directories hostfiles finds, bound read-only at their places after the profile's
    mounts, and git told to look past the file-system change around the current directory."""
    home, cwd = str(where / "home"), str(where / "home" / "project")

    class InARepository(NoFiles):
        def __init__(self, worktree):
            self.worktree = worktree

        def git_dirs(self, directory, homes):
            return self.worktree, ["/srv/repo/.git"], None

    variables = profile.Variables(cwd=cwd, home=home, user="alice", uid=1000, gid=1000, xdg_runtime_dir=None, env={})
    for name, worktree, binds in (("build", "/srv/repo", True), ("build", cwd, True), ("default", "/srv/repo", False)):
        asked = spec.from_profile(profile.load(name, variables), RunOptions(profile=name, binds=["/data"]), {}, cwd, 2,
                                  (home,), files=InARepository(worktree))
        git = [(m.type, m.src, m.dst, m.origin) for m in asked.mounts if m.src == "/srv/repo/.git"]
        assert git == ([("ro-bind", "/srv/repo/.git", "/srv/repo/.git", spec.GIT_ORIGIN)] if binds else [])
        assert asked.mounts[-1].src == "/data"  # the command line's mounts still come last
        assert asked.env.get("GIT_DISCOVERY_ACROSS_FILESYSTEM") == ("1" if binds and worktree != cwd else None)
    asked = spec.from_profile(profile.load("build", variables), RunOptions(profile="build",
                              env=["GIT_DISCOVERY_ACROSS_FILESYSTEM=0"]), {}, cwd, 2, (home,), files=InARepository("/srv/repo"))
    assert asked.env["GIT_DISCOVERY_ACROSS_FILESYSTEM"] == "0"  # -e wins


def refuse_the_system(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the config stage reached the system")

    for module, name in ((builtins, "open"), (os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"),
                         (os, "readlink"), (os, "mkdir"), (os, "fork"), (os, "getuid"), (os, "uname"),
                         (os.path, "realpath"), (os.path, "exists"), (os.path, "isdir"), (os.path, "isfile"),
                         (subprocess, "run"), (subprocess, "Popen")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("name", BUILTINS)
def test_the_spec_and_the_plan_touch_nothing(where, monkeypatch, name):
    """Once the profile is loaded (reading it is the one step that reads files, and the host facts are read
    before), spec.from_profile() and plan() make no system call: what they know of the host comes in as data
    (HostFacts) or through a HostFiles (issue 19: the whole config stage, not only plan())."""
    home, cwd = str(where / "home"), str(where / "home" / "project")
    variables = profile.Variables(cwd=cwd, home=home, user="alice", uid=1000, gid=1000, xdg_runtime_dir=None,
                                  env={})
    loaded = profile.load(name, variables)
    options = RunOptions(profile=name, binds=["/srv/data:/data"], allow_hosts=["example.org"]) if name == "agent" \
        else RunOptions(profile=name, binds=["/srv/data:/data"])
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "USER": "alice", "XDG_CONFIG_HOME": "/home/alice/.config"}
    from rootsand.net import allowlist  # noqa: F401 - imported as the spec stage would, before the system goes

    refuse_the_system(monkeypatch)
    try:
        asked = spec.from_profile(loaded, options, env, cwd, 2, (home,), files=NoFiles())
        the_plan = plan.plan(asked, FACTS)
    finally:
        monkeypatch.undo()  # before pytest itself needs the system, to report a failure
    assert ".husky/_/" in asked.protect and asked.own_dirs == ("/home/alice/.config/rootsand",)
    assert the_plan.mounts and the_plan.argv == ["/bin/sh"]


def test_planning_touches_nothing(where, monkeypatch):
    """plan() is pure: with every way to reach the system taken away, it still plans."""
    asked = make_spec(where, "untrusted")

    def refuse(*args, **kwargs):
        raise AssertionError("plan() reached the system")

    for module, name in ((builtins, "open"), (os, "open"), (os, "stat"), (os, "lstat"), (os, "listdir"),
                         (os, "mkdir"), (os, "fork"), (os, "getuid"), (subprocess, "run"), (subprocess, "Popen")):
        monkeypatch.setattr(module, name, refuse)
    the_plan = plan.plan(asked, FACTS)
    monkeypatch.undo()
    assert the_plan.name == "sandbox-4242" and the_plan.seccomp



def test_the_plan_takes_the_architecture_from_the_facts(where, monkeypatch):
    """The seccomp rules' architecture-specific numbers come from the facts, not from the host that plans."""
    from rootsand.security.seccomp.rules import HostArch

    asked = make_spec(where, "untrusted")
    monkeypatch.setattr(os, "uname", lambda: pytest.fail("plan() asked the host for its architecture"))
    s390 = plan.plan(asked, FACTS.replace(arch=HostArch(machine="s390x")))
    ppc = plan.plan(asked, FACTS.replace(arch=HostArch(machine="ppc64le", tiocsti=0x80017472)))
    assert [r.args[0][0] for r in s390.seccomp if r.syscall == "clone"] == [1]  # s390's clone: flags second
    assert 0x80017472 in {r.args[0][3] for r in ppc.seccomp if r.syscall == "ioctl"}
    assert plan.plan(asked, FACTS).seccomp == plan.plan(asked, FACTS).seccomp

def test_cli_mounts_follow_the_profile_in_order_with_their_origin(where):
    the_plan = plan.plan(make_spec(where, binds=["/a:/x", "/b"], ro_binds=["rel:/y"], tmpfs=["/t"],
                                   overlays=["/o:/z"]), FACTS)
    tail = [(s.type, s.src, s.dst, s.origin) for s in the_plan.mounts[-5:]]
    cwd = str(where / "home" / "project")
    assert tail == [("bind", "/a", "/x", "--bind /a:/x"), ("bind", "/b", "/b", "--bind /b"),
                    ("ro-bind", f"{cwd}/rel", "/y", "--ro-bind rel:/y"), ("tmpfs", None, "/t", "--tmpfs /t"),
                    ("overlay", None, "/z", "--overlay /o:/z")]
    first = the_plan.mounts[0]
    assert (first.type, first.dst, first.flags) == ("ro-bind", "/usr", ["ro", "nosuid", "nodev"])
    with open(os.path.join(profile.lookup.builtin_dir(), "default.toml")) as f:
        line = f.read().splitlines().index("[[mount]]") + 1  # the first mount's table
    assert first.origin.startswith("profile ") and first.origin.endswith(f"default.toml, line {line}")


@pytest.mark.parametrize("text,expected", [
    ("/a:/b", ("/a", "/b")), ("/a", ("/a", "/a")), ("rel", ("/cwd/rel", "/cwd/rel")), ("a:b:/c", ("/cwd/a:b", "/c")),
    ("/with:colon", ("/with:colon", "/with:colon")), ("./x/../y:/d/", ("/cwd/y", "/d")),
])
def test_mount_argument_splitting(text, expected):
    assert spec.split_mount_arg(text, "/cwd", "--bind") == expected


def test_mount_argument_errors_name_the_option():
    with pytest.raises(RootsandError, match=r"^--bind : expected SRC\[:DST\]$"):
        spec.split_mount_arg("", "/cwd", "--bind")
    with pytest.raises(RootsandError, match=r"^--bind /etc:/: cannot mount over /"):
        spec.cli_mounts(RunOptions(binds=["/etc:/"]), "/cwd")


@pytest.mark.parametrize("cwd,homes,exposed", [
    ("/home", ("/home/alice",), True),  # run from /home: the home below would show
    ("/", ("/home/alice",), True),
    ("/home/alice", ("/home/alice",), False),  # from home itself: asked for
    ("/home/alice/src", ("/home/alice",), False),
    ("/srv", ("/home/alice", "/srv/alice"), True),  # $HOME and the passwd entry differ: both count
    ("/data", ("/home/alice",), False),
])
def test_home_exposure(cwd, homes, exposed):
    bind = model.Mount(type="bind", src=cwd, dst=cwd)
    assert bool(spec._too_wide(bind, cwd, homes, {})) is exposed
    overlay = model.Mount(type="overlay", lower=[cwd], dst=cwd)
    assert bool(spec._too_wide(overlay, cwd, homes, {})) is exposed
    assert spec._too_wide(model.Mount(type="bind", src="/other", dst=cwd), cwd, homes, {}) is None


@pytest.mark.parametrize("src,cwd,expected", [
    ("/home/alice", "/home/alice/proj", "the directory /home/alice is your home directory"),  # fakeroot's ${CWD}/..
    ("/home/alice/src", "/home/alice/src/hello", None),
    ("/tmp", "/tmp/hello", "the directory /tmp is shared with other programs' sockets (/tmp)"),
    ("/run/user", "/x", "the directory /run/user is shared with other programs' sockets (/run/user/1000, below it)"),
    ("/tmp/x", "/tmp/x/hello", None),
])
def test_a_profile_mount_of_a_too_wide_directory(src, cwd, expected):
    m = model.Mount(type="bind", src=src, dst=src)
    assert spec._too_wide(m, cwd, ("/home/alice",), {"XDG_RUNTIME_DIR": "/run/user/1000"}) == expected


def test_run_from_the_parent_of_home_binds_an_empty_directory(where):
    home = str(where / "home")
    variables = profile.Variables(cwd=str(where), home=home, user="alice", uid=1000, gid=1000,
                                  xdg_runtime_dir=None, env={})
    asked = spec.from_profile(profile.load("default", variables), RunOptions(), {}, str(where), 2, (home,))
    assert [(m.type, m.dst) for m in asked.mounts if m.dst == str(where)] == [("dir", str(where))]
    assert "holds your home directory" in asked.notes[0]


def test_limits_use_a_delegated_cgroup_or_fall_back_to_rlimits(where):
    asked = make_spec(where, "untrusted")
    fallback = plan.plan(asked, FACTS)
    # RLIMIT_DATA: what a process can write to, not what it reserves (V8, Go, the JVM reserve gigabytes)
    assert fallback.limits.rlimits["data"] == 1 << 30 and fallback.limits.rlimits["nproc"] == 256
    assert "as" not in fallback.limits.rlimits
    assert [r.args[0] for r in fallback.seccomp if r.syscall == "mmap"] == [(1, "GT", 1 << 30, 0)]
    assert fallback.cgroup_parent is None and fallback.limits.cgroup == {}
    assert fallback.sysctls["kernel/shmall"] == str((1 << 30) // 4096)
    assert fallback.sysctls["user/max_inotify_instances"] == "16"
    assert any(r.syscall == "memfd_create" for r in fallback.seccomp)
    delegated = plan.plan(asked, FACTS.replace(cgroup_dir="/sys/fs/cgroup/user", cgroup_controllers=["memory", "pids"]))
    assert delegated.limits.cgroup == {"memory.max": str(1 << 30), "memory.swap.max": "0", "pids.max": "256"}
    assert not {"as", "data"} & set(delegated.limits.rlimits) and delegated.cgroup_parent == "/sys/fs/cgroup/user"
    assert "kernel/shmall" not in delegated.sysctls
    assert not any(r.syscall in ("memfd_create", "mmap") for r in delegated.seccomp)
    # a kernel booted with ignore_rlimit_data only logs a process past RLIMIT_DATA: RLIMIT_AS holds there
    ignored = plan.plan(asked, FACTS.replace(data_limit_ignored=True))
    assert ignored.limits.rlimits["as"] == 1 << 30 and "data" not in ignored.limits.rlimits
    assert ignored.limits.not_enforced[0] == ("no delegated cgroup v2 with these controllers: memory as RLIMIT_AS, per "
                                              "process (the kernel ignores RLIMIT_DATA: ignore_rlimit_data), pids as "
                                              "RLIMIT_NPROC")


def test_resolv_conf_puts_slirp_first_and_drops_the_hosts_loopback():
    text = plan.resolv_conf("nameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.1\noptions edns0\n", [])
    assert text == "nameserver 10.0.2.3\nnameserver 192.0.2.1\noptions edns0\n"
    assert plan.resolv_conf("nameserver 192.0.2.1\n", ["9.9.9.9"]) == "nameserver 9.9.9.9\nnameserver 192.0.2.1\n"


@pytest.mark.parametrize("text,expected", [
    ("8080:80", ("127.0.0.1", 8080, 80, "tcp")), ("0.0.0.0:53:53/udp", ("0.0.0.0", 53, 53, "udp")),
    ("[::1]:8443:443", ("::1", 8443, 443, "tcp")),
])
def test_publish_parsing(text, expected):
    forward = model.parse_publish(text)
    assert (forward.host_addr, forward.host_port, forward.guest_port, forward.proto) == expected


@pytest.mark.parametrize("text", ["80", "0:80", "8080:70000", "x:1:2", "1:2/sctp"])
def test_publish_parsing_rejects(text):
    with pytest.raises(RootsandError, match="invalid port"):
        model.parse_publish(text)


def test_user_not_in_the_map_is_refused(where):
    with pytest.raises(RootsandError, match=r"user 70000:70000 is not mapped in the sandbox \(ids 0-65536 are\)"):
        plan.plan(make_spec(where, user="70000"), FACTS)


def test_single_map_without_ranges_runs_root_as_the_user(where):
    the_plan = plan.plan(make_spec(where), FACTS.replace(subuids=[], subgids=[]))
    assert the_plan.ids.uid_lines == [(0, 1000, 1)] and (the_plan.run_uid, the_plan.run_gid) == (0, 0)
    assert "no range for you in /etc/subuid" in the_plan.notes[0]


# -- destinations inside the new root ----------------------------------------------------------------------

@pytest.fixture
def new_root(tmp_path):
    """A directory standing for the new root, walked by the real FileSystem code (no namespaces needed)."""
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc" / "file").write_text("x")
    os.symlink("/usr/lib", root / "abs")  # absolute: resolved inside the root
    os.symlink("../usr", root / "etc" / "rel")
    os.symlink("/../../../../tmp", root / "escape")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    fs = FileSystem([], None, (0, 0))
    fs.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    yield fs
    os.close(fs.root_fd)


@pytest.mark.parametrize("dst,expected", [
    ("/usr/lib", "/usr/lib"), ("/usr/../etc", "/etc"), ("/../../usr", "/usr"), ("/abs", "/usr/lib"),
    ("/etc/rel/lib", "/usr/lib"), ("/escape", "/tmp"), ("/abs/../..", "/"), ("/new/dir", "/new/dir"),
])
def test_destinations_resolve_inside_the_new_root(new_root, dst, expected):
    assert new_root._walk(dst, "resolve") == (None, expected)


def test_a_symlink_loop_is_an_error(new_root):
    with pytest.raises(OSError, match="too many levels of symbolic links"):
        new_root._walk("/loop1", "resolve")


def test_a_file_in_the_middle_of_a_destination_is_an_error(new_root):
    with pytest.raises(NotADirectoryError, match="/etc/file is not a directory"):
        new_root._walk("/etc/file/x", "dir")


def test_missing_mount_points_are_made_inside_the_root_only(new_root, tmp_path):
    fd, path = new_root._walk("/escape/made-here", "dir")
    os.close(fd)
    assert path == "/tmp/made-here"
    assert (tmp_path / "root" / "tmp" / "made-here").is_dir()
    fd, path = new_root._walk("/etc/rel/new-file", "file")
    os.close(fd)
    assert (tmp_path / "root" / "usr" / "new-file").is_file()


@pytest.mark.parametrize("name", BUILTINS)
def test_the_registry_writes_a_plan_as_to_json_does(where, name, tmp_path):
    """registry.publish encodes Records itself (the C encoder, no to_json() first): the same text."""
    from rootsand.ops import registry

    the_plan = plan.plan(make_spec(where, name, publish=["8080:80"], net="slirp"), FACTS)
    path = str(tmp_path / "entry.json")
    registry.publish(path, {"plan": the_plan, "ids": the_plan.ids})
    with open(path) as f:
        assert f.read() == json.dumps({"plan": the_plan.to_json(), "ids": the_plan.ids.to_json()})
    with pytest.raises(TypeError):
        registry.publish(path, {"plan": object()})


def test_a_too_wide_bind_left_out_covers_nothing_below_it(where):
    """A profile that binds the home (too wide: an empty directory stands there instead, after the current
    directory's bind) must not take the current directory out of the hiding, the protected paths and the
    checks after the run: the `dir` step covers nothing (attack 9, h04)."""
    home = str(where / "home")
    profile_file = where / "wide.toml"
    profile_file.write_text('extends = "agent"\n[[mount]]\ntype = "ro-bind"\nsrc = "${HOME}"\ndst = "${HOME}"\n')
    wide = plan.plan(make_spec(where, str(profile_file)), FACTS)
    plain = plan.plan(make_spec(where, "agent"), FACTS)
    assert any(s.type == "dir" and s.dst == home for s in wide.mounts)  # the bind left out
    assert [h.dst for h in wide.hidden] == [h.dst for h in plain.hidden] != []
    assert {p.dst for p in plain.protected} <= {p.dst for p in wide.protected}
    assert any(p.dst.endswith("/project/.git") for p in wide.protected)  # agent: all of .git read-only
