"""Profiles: lookup, extends, variables, validation errors (file, line, key), TOML output, and fuzzing."""

import os
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rootsand.config import profile
from rootsand.config.profile import Mount, Variables
from rootsand.errors import RootsandError

BUILTINS = ["agent", "build", "default", "fakeroot", "net", "untrusted"]


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A fake host: a config dir, a working directory, a home, and fixed variables."""
    for d in ("config", "work", "home", "run"):
        (tmp_path / d).mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path / "work")
    variables = Variables(cwd=str(tmp_path / "work"), home=str(tmp_path / "home"), user="alice", uid=1000,
                          gid=1001, xdg_runtime_dir=str(tmp_path / "run"), env={"FOO": "bar", "DOLLAR": "a$b"})
    return variables


def write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def user_profile(tmp_path, name, text) -> str:
    return write(tmp_path / "config" / "rootsand" / "profiles" / f"{name}.toml", text)


def error(name_or_path, variables) -> RootsandError:
    with pytest.raises(RootsandError) as info:
        profile.load(name_or_path, variables)
    return info.value


def assert_at(err: RootsandError, path, line, key, fragment=""):
    where = f"profile {path}, line {line}: {key}: " if line else f"profile {path}: {key}: "
    assert err.message.startswith(where), err.message
    assert fragment in err.message, err.message
    assert err.message.count(f"profile {path}") == 1 and "\n" not in err.message


# ------------------------------------------------------------------------------------------ built-ins

@pytest.mark.parametrize("name", BUILTINS)
def test_a_template_keeps_the_variables_and_loads_back_as_the_profile(host, tmp_path, name):
    """profiles show --template: the start of a profile of one's own. The resolved output bakes in the
    directory it was shown in; the template says ${CWD} and ${HOME}, and resolves to the same profile."""
    text = profile.template(name)
    assert str(tmp_path) not in text and "\u2063" not in text
    if name in ("default", "build"):
        assert 'src = "${CWD}"' in text and 'dst = "${HOME}"' in text
    copy = user_profile(tmp_path, "mine", text)
    body = lambda p: profile.to_toml(p).split("\n", 1)[1]  # noqa: E731 - all but the header line
    assert body(profile.load(copy, host)) == body(profile.load(name, host))


def test_a_template_keeps_environment_variables_and_dollars(host, tmp_path):
    path = user_profile(tmp_path, "envy", """
        [env]
        set = { GREETING = "${env:FOO}-$$-${USER}", ID = "${UID}:${GID}" }
        [[mount]]
        type = "bind"
        src = "${XDG_RUNTIME_DIR}/x"
        dst = "/run/x"
        optional = true
        """)
    text = profile.template(path)
    assert 'GREETING = "${env:FOO}-$$-${USER}"' in text and 'ID = "${UID}:${GID}"' in text
    assert 'src = "${XDG_RUNTIME_DIR}/x"' in text


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_loads_with_description(host, name):
    p = profile.load(name, host)
    assert p.description
    assert p.path.endswith(f"/{name}.toml")
    assert "user" in p.namespaces
    assert all(m.dst.startswith("/") and m.dst != "/" for m in p.mounts)


def test_default_profile(host):
    p = profile.load("default", host)
    assert p.chdir == host.cwd
    assert p.net_mode == "none" and p.env_clear and p.capabilities == ["CAP_SETFCAP"] and p.seccomp == "default"
    assert p.no_new_privs and p.new_session
    assert [(m.type, m.dst) for m in p.mounts][:6] == [
        ("ro-bind", "/usr"), ("symlink", "/bin"), ("symlink", "/sbin"), ("symlink", "/lib"),
        ("symlink", "/lib64"), ("ro-bind", "/etc")]
    # $HOME hidden by a tmpfs, then the current directory bound read-write on top.
    assert [(m.type, m.dst, m.src) for m in p.mounts][-2:] == [("tmpfs", host.home, None),
                                                              ("bind", host.cwd, host.cwd)]
    assert p.timeout is None and p.memory is None and p.rlimits == {}
    assert p.setuid_bits is False and p.socket_families == []


def test_build_profile(host):
    p = profile.load("build", host)
    default = profile.load("default", host)
    assert p.hostname == "build"
    assert p.mounts[:len(default.mounts)] == default.mounts
    extra = p.mounts[len(default.mounts):]
    assert [(m.type, m.dst, m.upper, m.optional) for m in extra[:2]] == [
        ("overlay", "/usr/local", "tmpfs", True), ("overlay", "/opt", "tmpfs", True)]
    assert all(m.type == "bind" and m.optional and m.dst.startswith(host.home + "/") for m in extra[2:])
    # the caches are made on the host when absent: pip's always, the others when their tool is there
    assert {m.src[len(host.home) + 1:]: m.create for m in extra[2:]} == {
        ".cache/pip": True, ".cache/ccache": "ccache", ".ccache": None, ".cargo/registry": "cargo",
        ".cargo/git": "cargo", ".npm": "npm", "go/pkg/mod": "go", ".cache/go-build": "go"}
    assert p.env_set == {"MAKEFLAGS": "auto"}
    assert p.git == "read-only" and default.git == "none"


def test_untrusted_profile(host):
    p = profile.load("untrusted", host)
    assert p.mounts[-1] == Mount("overlay", host.cwd, lower=[host.cwd], upper="tmpfs")
    assert p.mounts[-2] == Mount("bind", host.cwd, src=host.cwd)
    assert (p.timeout, p.memory, p.pids) == (600, 1 << 30, 256)
    assert p.rlimits == {"fsize": 1 << 30, "nofile": 1024, "core": 0}
    assert p.nested_userns is False and p.seccomp == "default"


def test_fakeroot_and_net_profiles(host):
    p = profile.load("fakeroot", host)
    assert p.user.mode == "root" and p.idmap == "keep-id"  # root inside is a subordinate id
    assert "CAP_CHOWN" in p.capabilities and "CAP_SYS_ADMIN" not in p.capabilities
    assert profile.load("net", host).net_mode == "auto"


def test_untrusted_and_agent_refuse_32_bit_system_calls_and_only_they(host):
    by_name = {name: profile.load(name, host) for name in BUILTINS}
    assert {name: p.compat_syscalls for name, p in by_name.items()} == {**dict.fromkeys(BUILTINS, True),
                                                                       "untrusted": False, "agent": False}


def test_fakeroot_allows_setuid_bits_and_only_it(host):
    by_name = {name: profile.load(name, host) for name in BUILTINS}
    assert {name: p.setuid_bits for name, p in by_name.items()} == {**dict.fromkeys(BUILTINS, False),
                                                                   "fakeroot": True}
    assert all(p.socket_families == [] for p in by_name.values())
    text = profile.to_toml(by_name["fakeroot"])
    security = text.split("\n[security]\n")[1].split("\n[")[0]
    assert "\nsetuid_bits = true\n" in security and "\nsocket_families = []" in security


@pytest.mark.parametrize("name", BUILTINS)
def test_to_toml_round_trip_builtin(host, tmp_path, name):
    p = profile.load(name, host)
    path = write(tmp_path / "out.toml", profile.to_toml(p))
    again = profile.load(path, host)
    assert again.replace(name=p.name, path=p.path) == p


def test_to_toml_round_trip_tricky_values(host, tmp_path):
    rules = write(tmp_path / "work" / "rules.sc", "x")
    (tmp_path / "work" / "a$b").mkdir()
    src = write(tmp_path / "work" / "p.toml", """
        description = "quotes \\" and $ and \\\\ and é"
        [sandbox]
        namespaces = ["user", "mount", "pid", "time"]
        time_offsets = { boottime = -5, monotonic = 7 }
        user = "${UID}:${GID}"
        [network]
        mode = "slirp"
        publish = ["127.0.0.1:8080:80/tcp", "53:53/udp"]
        dns = ["1.1.1.1", "::1"]
        [env]
        set = { A = "$$HOME", B = "${env:DOLLAR}", C = "tab\\there\\nnewline\\u007f" }
        [security]
        capabilities = "all"
        seccomp = "rules.sc"
        setuid_bits = true
        socket_families = ["AF_VSOCK", "AF_ALG"]
        [limits]
        cpu = 1.5
        timeout = 0.25
        rlimits = { as = "unlimited", cpu = 10, fsize = "8G" }
        [[mount]]
        type = "file"
        dst = "/etc/motd"
        content = "$$1 \\u0001 ${USER}"
        mode = "0644"
        [[mount]]
        type = "tmpfs"
        dst = "/big"
        size = "512k"
        [[mount]]
        type = "symlink"
        src = "../$$weird"
        dst = "/l"
        [[mount]]
        type = "overlay"
        lower = ["${CWD}/a$$b", "/usr"]
        upper = "${CWD}/upper"
        dst = "/o"
        [[mount]]
        type = "mqueue"
        dst = "/dev/mqueue"
        """)
    p = profile.load(src, host)
    assert p.env_set == {"A": "$HOME", "B": "a$b", "C": "tab\there\nnewline\x7f"}
    assert (p.user.uid, p.user.gid) == (1000, 1001) and p.seccomp == rules and p.capabilities == "all"
    assert p.setuid_bits is True and p.socket_families == ["AF_VSOCK", "AF_ALG"]
    assert p.rlimits == {"as": -1, "cpu": 10, "fsize": 8 << 30}
    assert p.mounts[0].content == "$1 \x01 alice" and p.mounts[0].mode == 0o644
    text = profile.to_toml(p)
    again = profile.load(write(tmp_path / "elsewhere" / "out.toml", text), host)
    assert again.replace(name=p.name, path=p.path) == p


# ------------------------------------------------------------------------------------------ lookup

def test_list_profiles_builtins(host):
    listed = profile.list_profiles()
    assert [n for n, _, _ in listed] == BUILTINS
    assert all(d and origin == "built-in" for _, d, origin in listed)


def test_user_profile_shadows_builtin(host, tmp_path):
    path = user_profile(tmp_path, "net", 'description = "my net"\n')
    user_profile(tmp_path, "mine", 'description = "mine"\n')
    user_profile(tmp_path, "broken", 'description = \n')
    assert profile.resolve_path("net") == path
    listed = {n: (d, o) for n, d, o in profile.list_profiles()}
    assert listed["net"] == ("my net", path)
    assert listed["mine"][0] == "mine"
    assert listed["broken"][0].startswith("(broken: ") and listed["default"][1] == "built-in"
    assert profile.load("net", host).net_mode == "none"


def test_lookup_name_and_paths(host, tmp_path):
    builtin = profile.resolve_path("build")
    assert builtin.endswith("/build.toml") and os.path.isfile(builtin)
    # build.toml without a local file: the built-in profile
    assert profile.resolve_path("build.toml") == builtin
    # ... and with one: still the built-in; the local file only when named as a path
    local = write(tmp_path / "work" / "build.toml", 'description = "local"\n')
    assert profile.resolve_path("build.toml") == builtin  # a sandbox may have written that local file
    assert profile.load("./build.toml", host).description == "local"
    assert profile.resolve_path("./build.toml") == local
    sub = write(tmp_path / "work" / "sub" / "x", "")
    assert profile.resolve_path("sub/x") == sub
    assert profile.resolve_path(sub) == sub


def test_relative_xdg_config_home_is_ignored(host, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", "config")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    builtin = profile.resolve_path("net")
    write(tmp_path / "work" / "config" / "rootsand" / "profiles" / "net.toml", "")
    assert profile.resolve_path("net") == builtin
    mine = write(tmp_path / "home" / ".config" / "rootsand" / "profiles" / "net.toml", "")
    assert profile.resolve_path("net") == mine


def test_list_profiles_skips_odd_files(host, tmp_path):
    user_profile(tmp_path, "-bad", "")
    (tmp_path / "config" / "rootsand" / "profiles" / "dir.toml").mkdir()
    write(tmp_path / "config" / "rootsand" / "profiles" / "notes.txt", "")
    assert [n for n, _, _ in profile.list_profiles()] == BUILTINS


@pytest.mark.parametrize("value,fragment", [
    ("nope", "no profile named 'nope'"),
    ("nope.toml", "no profile named 'nope'"),
    ("./nope.toml", "no profile file /"),
    ("/nonexistent/p.toml", "no profile file /nonexistent/p.toml"),
    ("-x", "invalid profile name"),
    ("a b", "invalid profile name"),
    ("", "invalid profile name"),
])
def test_lookup_errors(host, value, fragment):
    with pytest.raises(RootsandError, match=fragment) as info:
        profile.resolve_path(value)
    if "no profile named" in fragment:
        assert "default" in info.value.hint and "untrusted" in info.value.hint


def test_a_bare_file_name_in_the_current_directory_points_at_the_file(host, tmp_path):
    """-p local.toml with ./local.toml present: the name is a profile's, never a file of the current
    directory's (a sandbox may write there), but the error says how to mean the file."""
    write(tmp_path / "work" / "local.toml", 'extends = "default"\n')
    with pytest.raises(RootsandError) as info:
        profile.resolve_path("local.toml")
    assert info.value.message == "no profile named 'local'"
    assert info.value.hint.startswith(f"for the file {tmp_path}/work/local.toml, write ./local.toml; known profiles: ")
    assert profile.resolve_path("./local.toml") == str(tmp_path / "work" / "local.toml")


# ------------------------------------------------------------------------------------------ extends

def test_extends_by_name_merges(host, tmp_path):
    user_profile(tmp_path, "base", """
        description = "base"
        [sandbox]
        hostname = "parent"
        idmap = "single"
        namespaces = ["user", "mount", "pid", "time"]
        time_offsets = { boottime = 1 }
        [env]
        set = { A = "1", B = "2" }
        [security]
        setuid_bits = true
        socket_families = ["AF_ALG", "AF_TIPC"]
        [limits]
        rlimits = { nofile = 10, core = 0 }
        [[mount]]
        type = "tmpfs"
        dst = "/parent"
        """)
    child = write(tmp_path / "work" / "child.toml", """
        extends = "base"
        [sandbox]
        hostname = "child"
        namespaces = ["user", "mount", "pid", "time"]
        time_offsets = { monotonic = 2 }
        [env]
        set = { B = "two", C = "3" }
        [security]
        socket_families = ["AF_KCM"]
        [limits]
        rlimits = { nofile = 20 }
        [[mount]]
        type = "tmpfs"
        dst = "/child"
        """)
    p = profile.load(child, host)
    assert p.description == "base" and p.hostname == "child" and p.idmap == "single"
    assert p.namespaces == ["user", "mount", "pid", "time"]  # lists are replaced
    assert p.time_offsets == {"boottime": 1, "monotonic": 2}
    assert p.env_set == {"A": "1", "B": "two", "C": "3"}
    assert p.rlimits == {"nofile": 20, "core": 0}
    assert p.setuid_bits is True and p.socket_families == ["AF_KCM"]  # inherited; replaced like other lists
    assert [m.dst for m in p.mounts] == ["/parent", "/child"]


def test_extends_relative_path_and_profile_dir(host, tmp_path):
    parent = write(tmp_path / "a" / "parent.toml", """
        [env]
        set = { WHERE_PARENT = "${PROFILE_DIR}" }
        [[mount]]
        type = "ro-bind"
        src = "${PROFILE_DIR}"
        dst = "/p"
        """)
    child = write(tmp_path / "b" / "child.toml", """
        extends = "../a/parent.toml"
        [env]
        set = { WHERE_CHILD = "${PROFILE_DIR}" }
        """)
    p = profile.load(child, host)  # the cwd is tmp_path/work: relative to the file, not to it
    assert p.env_set == {"WHERE_PARENT": os.path.dirname(parent), "WHERE_CHILD": os.path.dirname(child)}
    assert p.mounts == [Mount("ro-bind", "/p", src=os.path.dirname(parent))]


def test_user_default_extends_builtin_default(host, tmp_path):
    user_profile(tmp_path, "default", 'extends = "default"\n[sandbox]\nhostname = "mine"\n')
    p = profile.load("default", host)
    assert p.hostname == "mine" and p.mounts[0].dst == "/usr"


def test_extends_cycle(host, tmp_path):
    a = write(tmp_path / "work" / "a.toml", 'extends = "b.toml"\n')
    b = write(tmp_path / "work" / "b.toml", '# b\nextends = "./a.toml"\n')
    err = error(a, host)
    assert_at(err, b, 2, "extends", f"extends cycle: {a} -> {b} -> {a}")


def test_extends_self_cycle(host, tmp_path):
    a = write(tmp_path / "work" / "a.toml", 'extends = "a.toml"\n')
    assert_at(error(a, host), a, 1, "extends", f"extends cycle: {a} -> {a}")
    loop = user_profile(tmp_path, "loop", '# loop\nextends = "loop"\n')
    assert_at(error("loop", host), loop, 2, "extends", "extends cycle")


def test_extends_depth_limit(host, tmp_path):
    for i in range(20):
        write(tmp_path / "work" / f"p{i}.toml", f'extends = "p{i + 1}.toml"\n' if i < 19 else "")
    assert profile.load(str(tmp_path / "work" / "p3.toml"), host)  # 16 extends: fine
    err = error(str(tmp_path / "work" / "p0.toml"), host)
    assert "more than 16" in err.message and "extends" in err.message


def test_extends_missing(host, tmp_path):
    p = write(tmp_path / "work" / "p.toml", 'description = "x"\nextends = "nope"\n')
    err = error(p, host)
    assert_at(err, p, 2, "extends", "no profile named 'nope'")
    assert "default" in err.hint


def test_error_in_parent_names_parent(host, tmp_path):
    parent = write(tmp_path / "work" / "parent.toml", "[sandbox]\nhostname = 5\n")
    child = write(tmp_path / "work" / "child.toml", 'extends = "parent.toml"\n')
    assert_at(error(child, host), parent, 2, "sandbox.hostname", "expected a string, got integer")


def test_cross_file_check_names_later_key(host, tmp_path):
    write(tmp_path / "work" / "parent.toml", '[sandbox]\nnamespaces = ["user", "mount", "pid", "time"]\n')
    child = write(tmp_path / "work" / "child.toml",
                  'extends = "parent.toml"\n[sandbox]\ntime_offsets = { boottime = 3 }\n')
    assert profile.load(child, host).time_offsets == {"boottime": 3}
    grand = write(tmp_path / "work" / "grand.toml", 'extends = "child.toml"\n[sandbox]\nnamespaces = ["user", "mount", "pid"]\n')
    assert_at(error(grand, host), child, 3, "sandbox.time_offsets", 'needs "time"')


# ------------------------------------------------------------------------------------------ variables

@pytest.mark.parametrize("text,expected", [
    ("${CWD}", "{cwd}"),
    ("${HOME}/x", "{home}/x"),
    ("${USER}", "alice"),
    ("${UID}:${GID}", "1000:1001"),
    ("${XDG_RUNTIME_DIR}", "{run}"),
    ("${PROFILE_DIR}", "{work}"),
    ("${env:FOO}-${env:DOLLAR}", "bar-a$b"),
    ("$$", "$"),
    ("$${HOME}", "${HOME}"),
    ("$$$${USER}", "$${USER}"),
    ("cost $5, a$ b $", "cost $5, a$ b $"),
])
def test_variables(host, tmp_path, text, expected):
    p = write(tmp_path / "work" / "p.toml", f'[env]\nset = {{ V = "{text}" }}\n')
    wanted = (expected.replace("{cwd}", host.cwd).replace("{home}", host.home)
              .replace("{run}", host.xdg_runtime_dir).replace("{work}", str(tmp_path / "work")))
    assert profile.load(p, host).env_set["V"] == wanted


def test_variables_in_paths_before_validation(host, tmp_path):
    p = write(tmp_path / "work" / "p.toml", """
        [sandbox]
        chdir = "${HOME}/../home/./"
        hostname = "h-${UID}"
        [[mount]]
        type = "bind"
        src = "${CWD}"
        dst = "${HOME}//w/"
        """)
    got = profile.load(p, host)
    assert got.chdir == host.home and got.hostname == "h-1000"
    assert got.mounts == [Mount("bind", host.home + "/w", src=host.cwd)]


@pytest.mark.parametrize("text,fragment", [
    ("${NOPE}", "unknown variable ${NOPE}"),
    ("${cwd}", "unknown variable ${cwd}"),
    ("${}", "unknown variable ${}"),
    ("${env:UNSET_VARIABLE}", "UNSET_VARIABLE is not set"),
    ("$HOME", "'$HOME' is not a variable"),
    ("${HOME", "'${' is not a variable"),
])
def test_variable_errors(host, tmp_path, text, fragment):
    p = write(tmp_path / "work" / "p.toml", f'# comment\n\n[env]\nclear = false\nset = {{ V = "{text}" }}\n')
    assert_at(error(p, host), p, 5, "env.set.V", fragment)


def test_xdg_runtime_dir_unset(host, tmp_path):
    p = write(tmp_path / "work" / "p.toml", '[[mount]]\ntype = "tmpfs"\ndst = "${XDG_RUNTIME_DIR}/x"\n')
    assert profile.load(p, host).mounts[0].dst == host.xdg_runtime_dir + "/x"
    unset = host.replace(xdg_runtime_dir=None)
    assert_at(error(p, unset), p, 3, "mount[1].dst", "XDG_RUNTIME_DIR is not set")


def test_description_is_not_expanded(host, tmp_path):
    p = write(tmp_path / "work" / "p.toml", 'description = "costs $5, ${NOPE}"\n')
    assert profile.load(p, host).description == "costs $5, ${NOPE}"


def test_from_host(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", "/some/home")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    v = Variables.from_host()
    assert v.cwd == str(tmp_path) and v.home == "/some/home" and v.uid == os.getuid() and v.gid == os.getgid()
    assert v.xdg_runtime_dir is None and v.env["HOME"] == "/some/home" and v.user


# ------------------------------------------------------------------------------------------ validation

MOUNT_PROC = '[[mount]]\ntype = "proc"\ndst = "/proc"\n\n'

# (file text, line, dotted key, part of the message)
INVALID = [
    ('hostnme = "x"\n', 1, "hostnme", "unknown key"),
    ('[sandbox]\nhostnme = "x"\n', 2, "sandbox.hostnme", "unknown key"),
    ('sandbox.hostnme = "x"\n', 1, "sandbox.hostnme", "unknown key"),
    ('[sandbx]\nhostname = "x"\n', 1, "sandbx", "unknown key"),
    ("sandbox = 5\n", 1, "sandbox", "expected a table, got integer"),
    ('description = 5\n', 1, "description", "expected a string, got integer"),
    ('extends = ["a"]\n', 1, "extends", "expected a string, got array"),
    ("[sandbox]\nhostname = 5\n", 2, "sandbox.hostname", "expected a string, got integer"),
    ('[sandbox]\nhostname = "bad_host!"\n', 2, "sandbox.hostname", "invalid hostname"),
    ('[sandbox]\nchdir = "relative"\n', 2, "sandbox.chdir", "expected an absolute path"),
    ('[sandbox]\nuser = "nobody"\n', 2, "sandbox.user", "invalid user"),
    ("[sandbox]\nuser = 0\n", 2, "sandbox.user", "expected a string, got integer"),
    ('[sandbox]\nidmap = "multi"\n', 2, "sandbox.idmap", "expected one of auto, single"),
    ('[sandbox]\nnamespaces = ["user", "pidd"]\n', 2, "sandbox.namespaces", "unknown namespace 'pidd'"),
    ('[sandbox]\nnamespaces = ["pid", "mount"]\n', 2, "sandbox.namespaces", '"user" must be in the list'),
    ('[sandbox]\nnamespaces = ["user", "pid", "pid"]\n', 2, "sandbox.namespaces", "listed twice"),
    ('[sandbox]\nnamespaces = "user"\n', 2, "sandbox.namespaces", "expected an array of strings, got string"),
    ('[sandbox]\nnamespaces = ["user", 1]\n', 2, "sandbox.namespaces", "an item of type integer"),
    ('[sandbox]\ntime_offsets = { boottime = 1 }\n', 2, "sandbox.time_offsets", 'needs "time"'),
    ('[sandbox]\nnamespaces = ["user", "mount", "pid", "time"]\ntime_offsets = { uptime = 1 }\n', 3, "sandbox.time_offsets.uptime",
     "unknown key"),
    ('[sandbox]\nnamespaces = ["user", "mount", "pid", "time"]\ntime_offsets = { boottime = 1.5 }\n', 3,
     "sandbox.time_offsets.boottime", "expected an integer, got float"),
    ('[network]\nmode = "bridge"\n', 2, "network.mode", "expected one of none, slirp, pasta, proxy, host, auto"),
    ("[network]\nallow_host_loopback = 1\n", 2, "network.allow_host_loopback", "expected true or false"),
    ('[network]\nmode = "slirp"\npublish = ["80"]\n', 3, "network.publish", "invalid port '80'"),
    ('[network]\nmode = "slirp"\npublish = ["0:80"]\n', 3, "network.publish", "ports 1-65535"),
    ('[network]\nmode = "slirp"\npublish = ["8080:65536"]\n', 3, "network.publish", "invalid port"),
    ('[network]\nmode = "slirp"\npublish = ["8080:80/sctp"]\n', 3, "network.publish", "invalid port"),
    ('[network]\nmode = "slirp"\npublish = ["host:8080:80"]\n', 3, "network.publish", "invalid port"),
    ('[network]\npublish = ["8080:80"]\n', 2, "network.publish", "slirp or pasta mode only"),
    ('[network]\ndns = ["10.0.2.300"]\n', 2, "network.dns", "expected an IP address"),
    ("[env]\nclear = \"yes\"\n", 2, "env.clear", "expected true or false, got string"),
    ('[env]\nset = { A = 1 }\n', 2, "env.set.A", "expected a string, got integer"),
    ('[env]\nset = { "A B" = "x" }\n', 2, 'env.set."A B"', "invalid environment variable name"),
    ('[env]\nkeep = ["A=B"]\n', 2, "env.keep", "invalid variable name"),
    ('[security]\ncapabilities = ["CAP_CHOWN", "cap_flying"]\n', 2, "security.capabilities",
     "unknown capability 'cap_flying'"),
    ('[security]\ncapabilities = "some"\n', 2, "security.capabilities", 'or "all"'),
    ('[security]\nseccomp = "rules/missing.json"\n', 2, "security.seccomp", "does not exist"),
    ('[security]\nno_new_privs = "false"\n', 2, "security.no_new_privs", "expected true or false"),
    ('[security]\nsetuid_bits = "yes"\n', 2, "security.setuid_bits", "expected true or false, got string"),
    ('[security]\n# x\nseccomp = "default"\nsetuid_bits = 1\n', 4, "security.setuid_bits",
     "expected true or false, got integer"),
    ('[security]\nsocket_families = ["AF_INET"]\n', 2, "security.socket_families", "unknown socket family 'AF_INET'"),
    ('[security]\nsocket_families = ["AF_ALG", "af_vsock"]\n', 2, "security.socket_families",
     "unknown socket family 'af_vsock'"),
    ('[security]\nsocket_families = ["vsock"]\n', 2, "security.socket_families", "unknown socket family 'vsock'"),
    ('[security]\nsocket_families = [""]\n', 2, "security.socket_families", "unknown socket family ''"),
    ('[security]\nsocket_families = "AF_ALG"\n', 2, "security.socket_families",
     "expected an array of strings, got string"),
    ('[security]\nnested_userns = true\n\nsocket_families = ["AF_ALG", 38]\n', 4, "security.socket_families",
     "an item of type integer"),
    ('security.socket_families = ["AF_UNIX"]\n', 1, "security.socket_families", "unknown socket family 'AF_UNIX'"),
    ('[limits]\npids = true\n', 2, "limits.pids", "expected an integer, got boolean"),
    ('[limits]\npids = 0\n', 2, "limits.pids", "out of range"),
    ('[limits]\nmemory = "1X"\n', 2, "limits.memory", "invalid memory '1X'"),
    ('[limits]\nmemory = -1\n', 2, "limits.memory", "must not be negative"),
    ('[limits]\nmemory = 0\n', 2, "limits.memory", "more than 0"),
    ('[limits]\nmemory = 1.5\n', 2, "limits.memory", "got float"),
    ('[limits]\nmemory = "${NOPE}"\n', 2, "limits.memory", "unknown variable"),
    ('[limits]\ntimeout = "${NOPE}"\n', 2, "limits.timeout", "unknown variable"),
    ('[sandbox]\nhostname = "${NOPE}"\n', 2, "sandbox.hostname", "unknown variable"),
    ('[limits]\ntimeout = "soon"\n', 2, "limits.timeout", "invalid timeout"),
    ('[limits]\ntimeout = true\n', 2, "limits.timeout", "got boolean"),
    ('[limits]\ntimeout = 99999999999999999999\n', 2, "limits.timeout", "too large"),
    ('[limits]\ncpu = 0\n', 2, "limits.cpu", "out of range"),
    ('[limits]\ncpu = nan\n', 2, "limits.cpu", "out of range"),
    ('[limits]\ncpu = "2"\n', 2, "limits.cpu", "got string"),
    ('[limits]\nrlimits = { stack = 1 }\n', 2, "limits.rlimits.stack", "unknown key"),
    ('[limits]\nrlimits = { nofile = -1 }\n', 2, "limits.rlimits.nofile", "out of range"),
    ('[limits]\nrlimits = { nofile = "8G" }\n', 2, "limits.rlimits.nofile", 'expected an integer or "unlimited"'),
    ('[limits]\nrlimits = { fsize = "8Q" }\n', 2, "limits.rlimits.fsize", "invalid rlimit fsize"),
    ('[limits]\n\nrlimits = { core = true }\n', 3, "limits.rlimits.core", "got boolean"),
    ('[mount]\ntype = "proc"\n', 1, "mount", "expected an array of tables"),
    ("mount = [1]\n", 1, "mount[1]", "expected a table, got integer"),
    ('[[mount]]\ndst = "/x"\n', 1, "mount[1]", 'missing key "type"'),
    ('[[mount]]\ntype = "blind"\ndst = "/x"\n', 2, "mount[1].type", "unknown mount type 'blind'"),
    ('[[mount]]\ntype = "tmpfs"\n', 1, "mount[1]", 'missing key "dst"'),
    ('[[mount]]\ntype = "bind"\ndst = "/x"\n', 1, "mount[1]", 'missing key "src"'),
    ('[[mount]]\ntype = "symlink"\ndst = "/x"\n', 1, "mount[1]", 'missing key "src"'),
    ('[[mount]]\ntype = "overlay"\ndst = "/x"\n', 1, "mount[1]", 'missing key "lower"'),
    ('[[mount]]\ntype = "bind"\nsrc = "/usr"\ndst = "/x"\nlower = ["/usr"]\n', 5, "mount[1].lower",
     "does not apply to bind mounts"),
    ('[[mount]]\ntype = "proc"\ndst = "/x"\nsize = "1M"\n', 4, "mount[1].size", "does not apply to proc mounts"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/x"\ncolour = "red"\n', 4, "mount[1].colour", "unknown key"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "x"\n', 3, "mount[1].dst", "expected an absolute path, got 'x'"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/"\n', 3, "mount[1].dst", "must not be /"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/a/.."\n', 3, "mount[1].dst", "must not be /"),
    ('[[mount]]\ntype = "bind"\nsrc = "usr"\ndst = "/x"\n', 3, "mount[1].src", "expected an absolute path"),
    ('[[mount]]\ntype = "symlink"\nsrc = ""\ndst = "/x"\n', 3, "mount[1].src", "must not be empty"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/x"\nsize = "64Q"\n', 4, "mount[1].size", "invalid tmpfs size"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/x"\nsize = 0\n', 4, "mount[1].size", "more than 0"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/x"\nmode = "0999"\n', 4, "mount[1].mode", "invalid mode '0999'"),
    ('[[mount]]\ntype = "dir"\ndst = "/x"\nmode = "17777"\n', 4, "mount[1].mode", "must be 0 to 07777"),
    ('[[mount]]\ntype = "dir"\ndst = "/x"\nmode = 755\n', 4, "mount[1].mode", "as a string like"),
    ('[[mount]]\ntype = "file"\ndst = "/x"\nmode = true\n', 4, "mount[1].mode", "got boolean"),
    ('[[mount]]\ntype = "file"\ndst = "/x"\ncontent = 1\n', 4, "mount[1].content", "got integer"),
    ('[[mount]]\ntype = "bind"\nsrc = "/usr"\ndst = "/x"\noptional = "yes"\n', 5, "mount[1].optional",
     "expected true or false"),
    ('[[mount]]\ntype = "bind"\nsrc = "/c"\ndst = "/c"\ncreate = 1\n', 5, "mount[1].create",
     "expected true, false or a program's name, got integer"),
    ('[[mount]]\ntype = "bind"\nsrc = "/c"\ndst = "/c"\ncreate = "/usr/bin/cargo"\n', 5, "mount[1].create",
     "a program's name (no path), got '/usr/bin/cargo'"),
    ('[[mount]]\ntype = "bind"\nsrc = "/c"\ndst = "/c"\ncreate = ""\n', 5, "mount[1].create", "(no path), got ''"),
    ('[[mount]]\ntype = "ro-bind"\nsrc = "/c"\ndst = "/c"\ncreate = true\n', 5, "mount[1].create",
     "does not apply to ro-bind mounts"),
    ('[[mount]]\ntype = "tmpfs"\ndst = "/c"\ncreate = true\n', 4, "mount[1].create", "does not apply to tmpfs mounts"),
    ('[sandbox]\ngit = "read-write"\n', 2, "sandbox.git", "expected one of none, read-only, got 'read-write'"),
    ('[[mount]]\ntype = "overlay"\nlower = []\ndst = "/x"\n', 3, "mount[1].lower", "at least one"),
    ('[[mount]]\ntype = "overlay"\nlower = "/usr"\ndst = "/x"\n', 3, "mount[1].lower", "array of strings"),
    ('[[mount]]\ntype = "overlay"\nlower = ["usr"]\ndst = "/x"\n', 3, "mount[1].lower", "absolute path"),
    (MOUNT_PROC + '[[mount]]\ntype = "bind"\nsrc = 5\ndst = "/x"\n', 7, "mount[2].src",
     "expected a string, got integer"),
    (MOUNT_PROC + '[[mount]]\n  type = "tmpfs"   # comment\n\n  dst = "/x"\n  "mode" = "8"\n', 9, "mount[2].mode",
     "invalid mode"),
    ('# leading comment\n\n[security]\n\n# more\nnested_userns = 0\n', 6, "security.nested_userns", "got integer"),
    ('[sandbox]\nhostname = "ok"\n\n[sandbox.x]\ny = 1\n', 4, "sandbox.x", "unknown key"),
]


@pytest.mark.parametrize("text,line,key,fragment", INVALID, ids=[f"{c[2]}:{c[3][:20]}" for c in INVALID])
def test_validation_errors(host, tmp_path, text, line, key, fragment):
    path = write(tmp_path / "work" / "p.toml", text)
    assert_at(error(path, host), path, line, key, fragment)


def test_valid_values_accepted(host, tmp_path):
    path = write(tmp_path / "work" / "p.toml", """
        [sandbox]
        user = "keep-id"
        idmap = "single"
        namespaces = ["user", "pid", "mount", "uts", "ipc", "net", "cgroup", "time"]
        [network]
        mode = "slirp"
        allow_host_loopback = true
        publish = ["8080:80", "[::1]:53:53/udp", "0.0.0.0:1:65535/tcp"]
        [security]
        capabilities = ["chown", "CAP_SYS_ADMIN", "cap_net_raw", "CHOWN"]
        seccomp = "none"
        setuid_bits = false
        socket_families = ["AF_ALG", "AF_VSOCK", "AF_KCM", "AF_TIPC", "AF_ALG"]
        [limits]
        timeout = 90
        memory = "2G"
        cpu = 2
        rlimits = { nofile = 4096, nproc = "unlimited", core = "0", cpu = 60, as = 1024 }
        [[mount]]
        type = "dir"
        dst = "/d"
        mode = "755"
        [[mount]]
        type = "dev-bind"
        src = "/dev/null"
        dst = "/dev/null"
        """)
    p = profile.load(path, host)
    assert p.capabilities == ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_RAW"]
    assert p.setuid_bits is False and p.socket_families == ["AF_ALG", "AF_VSOCK", "AF_KCM", "AF_TIPC"]
    assert (p.timeout, p.memory, p.cpu) == (90.0, 2 << 30, 2.0)
    assert p.rlimits == {"nofile": 4096, "nproc": -1, "core": 0, "cpu": 60, "as": 1024}
    assert p.mounts[0].mode == 0o755 and "time" in p.namespaces


def test_hints_list_what_is_allowed(host, tmp_path):
    path = write(tmp_path / "work" / "p.toml", '[sandbox]\nhostnme = "x"\n')
    assert "hostname" in error(path, host).hint
    path = write(tmp_path / "work" / "p.toml", '[[mount]]\ntype = "blind"\ndst = "/x"\n')
    assert "ro-bind" in error(path, host).hint
    path = write(tmp_path / "work" / "p.toml", '[[mount]]\ntype = "proc"\ndst = "/x"\nsrc = "/y"\n')
    assert error(path, host).hint == "proc mounts take type, dst"
    path = write(tmp_path / "work" / "p.toml", '[security]\nsocket_families = ["AF_NETLINK"]\n')
    assert error(path, host).hint == "socket_families: AF_VSOCK, AF_KCM, AF_TIPC, AF_ALG (the others are not refused)"


def test_path_with_newline_round_trips(host, tmp_path):
    path = write(tmp_path / "work" / "odd\nname.toml", 'extends = "default"\n[env]\nset = { A = "x\\ny" }\n')
    p = profile.load(path, host)
    assert p.env_set["A"] == "x\ny"
    text = profile.to_toml(p)
    assert text.startswith("# profile ") and "odd?name.toml" in text.split("\n")[0]
    again = profile.load(write(tmp_path / "out.toml", text), host)
    assert again.replace(name=p.name, path=p.path) == p
    err = error(write(tmp_path / "work" / "bad\ndir" / "p.toml", "x = 1\n"), host)
    assert "\n" not in err.message and "bad\\ndir" in err.message


def test_a_profile_does_not_look_at_the_host_paths_it_names(host, tmp_path):
    """A profile is read without the host: whether a bind source or an overlay's lower dir is there is decided
    by runtime/hostprep.py where it runs (tests/integration/test_plan_run.py), so `profiles show` and a plan
    work for a profile made for another machine (issue 19)."""
    missing = str(tmp_path / "missing")
    path = write(tmp_path / "work" / "p.toml", f"""
        [[mount]]
        type = "ro-bind"
        src = "{missing}"
        dst = "/m"

        [[mount]]
        type = "overlay"
        lower = ["/usr", "{missing}"]
        upper = "{missing}/up"
        dst = "/o"
        """)
    assert profile.load(path, host).mounts == [
        Mount("ro-bind", "/m", src=missing), Mount("overlay", "/o", lower=["/usr", missing], upper=f"{missing}/up")]


def test_overlay_upper_parent_may_exist(host, tmp_path):
    path = write(tmp_path / "work" / "p.toml",
                 '[[mount]]\ntype = "overlay"\nlower = ["/usr"]\nupper = "${CWD}/new"\ndst = "/o"\n')
    assert profile.load(path, host).mounts[0].upper == host.cwd + "/new"


def test_binary_garbage(host, tmp_path):
    path = tmp_path / "work" / "p.toml"
    path.write_bytes(b"description = 1\n\x89PNG\r\n\x1a\n\x00\xff\xfe")
    err = error(str(path), host)
    assert err.message == f"profile {path}, line 2: not UTF-8 text (a binary file?)"


def test_broken_toml(host, tmp_path):
    path = write(tmp_path / "work" / "p.toml", '[sandbox]\nhostname = "x\n')
    err = error(path, host)
    assert err.message.startswith(f"profile {path}: invalid TOML: ") and "(at line 2, column" in err.message


def test_unreadable_profile(host, tmp_path):
    (tmp_path / "work" / "dir.toml").mkdir()
    assert error(str(tmp_path / "work" / "dir.toml"), host).message.endswith("dir.toml: not a regular file")


def test_a_fifo_profile_is_refused_without_blocking(host, tmp_path):
    os.mkfifo(tmp_path / "work" / "fifo.toml")
    assert error(str(tmp_path / "work" / "fifo.toml"), host).message.endswith("fifo.toml: not a regular file")


# ------------------------------------------------------------------------------------------ sizes

@pytest.mark.parametrize("value,expected", [
    (0, 0), (2048, 2048), ("2048", 2048), ("512k", 512 << 10), ("512K", 512 << 10), ("64M", 64 << 20),
    ("1G", 1 << 30), ("1g", 1 << 30), ("2T", 2 << 40), (" 3 M ", 3 << 20),
])
def test_parse_size(value, expected):
    assert profile.parse_size(value, "size") == expected


@pytest.mark.parametrize("value", ["", "M", "1.5G", "1MB", "-1", "1 2", "0x10", "1e3", True, None, 1.0, [1], -5,
                                   "9" * 30, "99999999999T"])
def test_parse_size_rejects(value):
    with pytest.raises(RootsandError, match="invalid memory"):
        profile.parse_size(value, "memory")


def test_toml_value_escapes():
    assert profile.toml_value('a"b\\c\n\x01\x7f') == '"a\\"b\\\\c\\n\\u0001\\u007f"'
    assert profile.toml_value({"a b": [1, 2.5, True]}) == '{ "a b" = [1, 2.5, true] }'


# ------------------------------------------------------------------------------------------ fuzzing

def _all_keys():
    keys = set(profile.TOP_KEYS) | set(profile.ALL_MOUNT_KEYS) | set(profile.RLIMITS) | {"boottime", "monotonic"}
    for fields in profile.SCHEMA.values():
        keys |= set(fields)
    return sorted(keys)


# Values of any shape, for keys of any name: mostly refused, and the refusal must be a RootsandError.
PLAUSIBLE = [
    "/usr", "/", "/tmp/x", "relative", "${HOME}", "${CWD}/x", "${PROFILE_DIR}", "$$", "${NOPE}", "${env:FOO}",
    "64M", "0755", "1777", "root", "keep-id", "1000:1000", "user", "pid", "time", "auto", "single", "tmpfs",
    "bind", "ro-bind", "overlay", "symlink", "file", "proc", "dir", "all", "chown", "default", "none", "slirp",
    "8080:80", "unlimited", "10m", "build", "default", "self.toml", "../x.toml", "a\x00b", "é", "",
]
leaf = st.one_of(st.booleans(), st.integers(), st.floats(), st.text(max_size=12), st.sampled_from(PLAUSIBLE),
                 st.integers(min_value=-2, max_value=70000))
value = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(_all_keys()) | st.text(max_size=6), inner, max_size=4), max_leaves=8)


def _pick(*items):
    return st.sampled_from(items)


def _list(*items):
    return st.lists(st.sampled_from(items), max_size=4)


# Values that are often right for each key, so the fuzzing reaches past the first check and round-trips.
paths = _pick("/x", "/usr", "${HOME}/y", "${CWD}", "/a/..", "/", "rel", "/nonexistent/a", "/tmp/$$x")
GOOD = {
    "description": st.text(max_size=20),
    "extends": _pick("default", "build", "net", "self.toml", "../x.toml", "nope", "untrusted.toml"),
    "hostname": _pick("rootsand", "build", "bad_host!", "h-${UID}"),
    "chdir": paths,
    "user": _pick("root", "keep-id", "1000", "1:2", "nobody", "${UID}"),
    "namespaces": st.lists(st.sampled_from(profile.ALL_NAMESPACES + ("bogus",)), max_size=8),
    "idmap": _pick("auto", "single", "x"),
    "time_offsets": st.dictionaries(_pick("boottime", "monotonic", "uptime"), st.integers(-10, 10), max_size=2),
    "mode": _pick("none", "slirp", "host", "x", "0755", "755", "9"),
    "publish": _list("8080:80", "1.2.3.4:1:2/udp", "[::1]:53:53", "0:1", "x"),
    "dns": _list("1.1.1.1", "::1", "x"),
    "keep": _list("PATH", "LC_*", "A=B", ""),
    "set": st.dictionaries(_pick("A", "B C", "_x", "MAKEFLAGS"), st.text(max_size=8) | _pick("$$", "${USER}")),
    "capabilities": _pick("all", "none") | _list("chown", "CAP_SETUID", "cap_sys_admin", "bogus"),
    "seccomp": _pick("default", "none", "x.sc", "/nonexistent", ""),
    "socket_families": _list("AF_VSOCK", "AF_KCM", "AF_TIPC", "AF_ALG", "AF_INET", "alg"),
    "timeout": _pick("10m", 5, 0.5, -1, "x", 0),
    "memory": _pick("1G", 0, 1024, "x", -3),
    "pids": st.integers(-1, 5000),
    "cpu": st.floats(-1, 100),
    "rlimits": st.dictionaries(st.sampled_from(profile.RLIMITS + ("stack",)),
                               _pick(0, 10, -1, "unlimited", "8G", "x"), max_size=3),
    "type": st.sampled_from(list(profile.MOUNT_KEYS) + ["blind"]),
    "dst": paths,
    "src": paths,
    "optional": st.booleans(),
    "lower": st.lists(paths, max_size=3),
    "upper": _pick("tmpfs", "${CWD}/u", "/nonexistent/a/b", "rel"),
    "size": _pick("64M", 0, 100, "x"),
    "content": st.text(max_size=20),
}
for flag in ("allow_host_loopback", "clear", "no_new_privs", "new_session", "nested_userns", "setuid_bits",
             "compat_syscalls"):
    GOOD[flag] = st.booleans()


def _good(key):
    # Mostly a plausible value, sometimes anything at all.
    return st.one_of(*[GOOD.get(key, value)] * 9, value)


def _table(keys, extra=()):
    return st.fixed_dictionaries({}, optional={k: _good(k) for k in [*keys, *extra]})


def _mount_for(kind):
    keys = ("dst", *profile.MOUNT_KEYS[kind])
    required = {k: _good(k) for k in keys if k in ("dst", "src", "lower")}
    return st.fixed_dictionaries({"type": st.just(kind), **required},
                                 optional={k: _good(k) for k in keys if k not in required})


mount_table = st.sampled_from(list(profile.MOUNT_KEYS)).flatmap(_mount_for) | _table(profile.ALL_MOUNT_KEYS, ["junk"])
document = st.fixed_dictionaries({}, optional={
    "description": _good("description"), "extends": _good("extends"),
    **{name: _table(fields) | _table(fields, ["junk"]) | value for name, fields in profile.SCHEMA.items()},
    "mount": st.lists(mount_table, max_size=4) | value,
})
odd_document = st.dictionaries(st.sampled_from(_all_keys()) | st.text(max_size=8), value, max_size=5)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_only_rootsand_errors(path, host):
    try:
        p = profile.load(path, host)
    except RootsandError as e:
        assert e.message.startswith("profile ") and "\n" not in e.message
        assert e.message.count(": profile ") == 0, e.message  # one location, not one per nested check
        return
    # Whatever loads must come back unchanged through to_toml.
    out = os.path.join(os.path.dirname(path), "roundtrip.toml")
    with open(out, "w") as f:
        f.write(profile.to_toml(p))
    again = profile.load(out, host)
    assert again.replace(name=p.name, path=p.path) == p


@FUZZ
@given(doc=st.one_of(document, document, document, odd_document))
def test_fuzz_documents(host, tmp_path, doc):
    path = tmp_path / "work" / "self.toml"
    path.write_text(profile.dump_toml(doc))
    _load_only_rootsand_errors(str(path), host)


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_text(host, tmp_path, text):
    path = tmp_path / "work" / "self.toml"
    path.write_text(text)
    _load_only_rootsand_errors(str(path), host)


@FUZZ
@given(data=st.binary(max_size=300))
def test_fuzz_bytes(host, tmp_path, data):
    path = tmp_path / "work" / "self.toml"
    path.write_bytes(data)
    _load_only_rootsand_errors(str(path), host)


@FUZZ
@given(name=st.sampled_from(BUILTINS), edits=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(
    ["", "[[mount]]", "[sandbox]", 'type = "bind"', 'dst = "/"', "x = 1", '"', "]", 'extends = "self.toml"',
     'src = "${NOPE}"', "optional = true", 'lower = []'])), max_size=5))
def test_fuzz_edited_builtins(host, tmp_path, name, edits):
    lines = open(profile.resolve_path(name)).read().split("\n")
    for position, text in edits:
        lines.insert(position % (len(lines) + 1), text)
    path = tmp_path / "work" / "self.toml"
    path.write_text("\n".join(lines))
    _load_only_rootsand_errors(str(path), host)
