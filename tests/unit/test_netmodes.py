"""The network modes: one table of data (config/netmodes.py) and one Backend class per mode (net/backend.py), and
nothing else that knows them by name. Adding a mode (pasta, a pod) is one table entry and one Backend class."""

import ast
import os

import pytest

import rootsand
from rootsand.cli.options import RunOptions
from rootsand.config import netmodes, plan, profile, spec
from rootsand.config.idmap import SubidRange
from rootsand.config.netmodes import MODES, NetMode
from rootsand.config.plan import HostFacts, Network
from rootsand.errors import RootsandError
from rootsand.net import backend
from rootsand.net.backend import BACKENDS, Backend, backend_for

PACKAGE = os.path.dirname(rootsand.__file__)
# Where modes are known by name: the table, and the run-time side of each.
OWNERS = {os.path.join("config", "netmodes.py"), "net"}


def _sources():
    for directory, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "profiles"))
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, PACKAGE)
            if name.endswith(".py") and relative not in OWNERS and relative.split(os.sep)[0] not in OWNERS:
                with open(path) as f:
                    yield relative, ast.parse(f.read())


def _mode_names(node) -> set[str]:
    """The mode names a comparison's operand is, or holds (`x in ("slirp", "proxy")`)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {item.value for item in items if isinstance(item, ast.Constant) and item.value in MODES}


def test_every_mode_has_a_backend_and_every_backend_a_mode():
    assert sorted(BACKENDS) == sorted(MODES)
    for name, cls in BACKENDS.items():
        assert issubclass(cls, Backend) and cls.name == name
        assert type(backend_for(Network(mode=name))) is cls


def test_no_module_but_the_table_and_net_compares_a_mode_name():
    """`mode == "slirp"`, `net_mode != "host"`, `entry.get("net") in ("none", ...)`: each is a place a new mode
    would have to be added to. Ask the table (a NetMode field) or the backend (a hook) instead."""
    found = []
    for relative, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            for operand in operands:
                names = _mode_names(operand)
                others = " ".join(ast.unparse(o) for o in operands if o is not operand).lower()
                # "none" is also security.seccomp's value: a comparison is a mode's when it is about the network
                if names and ("net" in others or "mode" in others):
                    found.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_no_module_but_the_table_has_a_modes_addresses():
    """The addresses and interface names exist once: the plan carries them to the runtime."""
    values = {v for mode in MODES.values() for v in (mode.address, mode.gateway, mode.dns, mode.interface) if v}
    found = []
    for relative, tree in _sources():
        found += [f"{relative}:{node.lineno}: {node.value}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in values]
    for name in ("network.py", "backend.py"):
        with open(os.path.join(PACKAGE, "net", name)) as f:
            found += [f"net/{name}:{node.lineno}: {node.value}" for node in ast.walk(ast.parse(f.read()))
                      if isinstance(node, ast.Constant) and node.value in values]
    assert found == []


def test_messages_name_the_modes_from_the_table():
    assert netmodes.one_of(netmodes.NET_MODES) == "none, slirp, pasta, proxy or host"
    assert netmodes.one_of(netmodes.NET_CHOICES) == "none, slirp, pasta, proxy, host or auto"
    assert netmodes.modes_with("publish") == ["slirp", "pasta"] and netmodes.modes_with("allowlist") == ["proxy"]


def test_auto_is_pasta_where_installed_else_slirp():
    both = {"pasta": "/usr/bin/pasta", "slirp4netns": "/usr/bin/slirp4netns"}
    assert netmodes.auto_mode(both.get) == "pasta"
    assert netmodes.auto_mode({"slirp4netns": "/usr/bin/slirp4netns"}.get) == "slirp"
    assert netmodes.auto_mode({}.get) == "slirp"  # whose error names what to install


def _spec(tmp_path, monkeypatch, **options):
    """What `rootsand run -p default OPTIONS` asks for, for alice in ~/project."""
    (tmp_path / "home" / "project").mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    home, cwd = str(tmp_path / "home"), str(tmp_path / "home" / "project")
    variables = profile.Variables(cwd=cwd, home=home, user="alice", uid=1000, gid=1000, xdg_runtime_dir=None, env={})
    return spec.from_profile(profile.load("default", variables), RunOptions(profile="default", **options),
                             {"PATH": "/bin"}, cwd, 2, (home,))


@pytest.fixture
def pasta(monkeypatch):
    """A new mode as a contributor would add it: one table entry, one Backend class."""
    mode = NetMode(name="pasta", publish=True, host_loopback=True, helper="pasta", resolv_conf=True,
                   interface="eth0", address="192.0.2.10", prefix=24, gateway="192.0.2.1", dns="192.0.2.53")

    class PastaBackend(Backend):
        name = "pasta"

    monkeypatch.setitem(MODES, "pasta", mode)
    monkeypatch.setitem(BACKENDS, "pasta", PastaBackend)
    return PastaBackend


def test_a_new_mode_is_one_table_entry_and_one_backend(pasta, tmp_path, monkeypatch):
    asked = _spec(tmp_path, monkeypatch, net="pasta", publish=["8080:80"], allow_host_loopback=True)
    facts = HostFacts(uid=1000, gid=1000, pid=1, newuidmap="/usr/bin/newuidmap", newgidmap="/usr/bin/newgidmap",
                      subuids=[SubidRange(100000, 65536)], subgids=[SubidRange(100000, 65536)],
                      resolv_conf="nameserver 198.51.100.1\n")
    the_plan = plan.plan(asked, facts)
    net = the_plan.network
    assert (net.mode, net.address, net.gateway, net.dns, net.interface) == (
        "pasta", "192.0.2.10/24", "192.0.2.1", "192.0.2.53", "eth0")
    assert net.allow_host_loopback and [str(f) for f in net.publish] == ["127.0.0.1:8080:80/tcp"]
    assert the_plan.etc_files["resolv.conf"] == "nameserver 192.0.2.53\nnameserver 198.51.100.1\n"
    assert "net" in the_plan.namespaces and type(backend_for(net)) is pasta
    assert any(r.syscall == "socket" for r in the_plan.seccomp)  # its sockets stay filtered
    assert f"{net.address} via {net.gateway}" in "\n".join(plan.describe(the_plan))


def test_a_network_namespace_of_its_own_decides_the_namespaces_and_what_inspect_shows(tmp_path, monkeypatch):
    for name, mode in MODES.items():
        asked = _spec(tmp_path, monkeypatch, **({"pod": "p"} if mode.pod else {"net": name}))
        assert ("net" in asked.namespaces) == mode.own_netns, name
        shown = backend_for(Network(mode=name)).inspect(lambda: ["lo"])
        assert shown == ({"interfaces": ["lo"]} if mode.own_netns else {}), name


def test_a_pod_member_is_asked_for_with_pod_alone(tmp_path, monkeypatch):
    assert _spec(tmp_path, monkeypatch, pod="web").net_mode == "pod"
    for options in ({"net": "pod"}, {"pod": "web", "net": "slirp"}, {"pod": "web", "allow_hosts": ["pypi.org"]}):
        with pytest.raises(RootsandError) as e:
            _spec(tmp_path, monkeypatch, **options)
        assert e.value.message.startswith(("invalid --net 'pod'", "--pod joins the pod's network")), options


def test_the_backends_hooks_do_nothing_by_default():
    quiet = backend.NoneBackend(Network())
    quiet.prepare()
    quiet.after_fork(in_child=False)
    assert quiet.unshared() is None and quiet.configure() is False
    quiet.start(0, print)
    quiet.check(debug=False)
    assert quiet.join() == 0 and quiet.joins_user is False
    quiet.finish()
    quiet.stop()


def test_a_mode_with_a_network_namespace_of_its_own_needs_the_net_namespace(tmp_path):
    """Attack round 4: a profile that left "net" out of sandbox.namespaces still planned mode none ("loopback
    only"), and the sandbox had the host's network. Refused now, naming what to change; --net host is fine."""
    variables = profile.Variables(cwd=str(tmp_path), home=str(tmp_path), user="alice", uid=1000, gid=1000,
                                  xdg_runtime_dir=None, env={})
    path = tmp_path / "p.toml"
    path.write_text('extends = "default"\n[sandbox]\nnamespaces = ["user", "pid", "mount", "uts", "ipc"]\n')
    loaded = profile.load(str(path), variables)
    for net in (None, "slirp", "proxy"):
        with pytest.raises(RootsandError) as e:
            spec.from_profile(loaded, RunOptions(net=net), {}, str(tmp_path), 2)
        assert e.value.message == (f"network mode {net or 'none'} needs the net namespace, which the profile's "
                                   "sandbox.namespaces leaves out")
    assert "net" not in spec.from_profile(loaded, RunOptions(net="host"), {}, str(tmp_path), 2).namespaces


def test_a_pod_members_plan_binds_the_pods_hosts_file_and_shares_its_map(tmp_path, monkeypatch):
    facts = HostFacts(uid=1000, gid=1000, pid=1, newuidmap="/usr/bin/newuidmap", newgidmap="/usr/bin/newgidmap",
                      subuids=[SubidRange(100000, 65536)], subgids=[SubidRange(100000, 65536)],
                      pod_hosts="/run/user/1000/rootsand/pods/web.hosts")
    the_plan = plan.plan(_spec(tmp_path, monkeypatch, pod="web", name="db"), facts)
    assert (the_plan.network.mode, the_plan.network.pod, the_plan.network.member) == ("pod", "web", "db")
    assert the_plan.mounts[-1].type == "ro-bind" and the_plan.mounts[-1].dst == "/etc/hosts"
    assert the_plan.mounts[-1].src == "/run/user/1000/rootsand/pods/web.hosts"
    assert "hosts" not in the_plan.etc_files  # the pod's file, kept current, not a copy made once
    with pytest.raises(RootsandError) as e:
        plan.plan(_spec(tmp_path, monkeypatch, pod="web", user="keep-id"), facts)
    assert e.value.message.startswith("--pod: a pod's members share its id map")


def test_a_pod_member_needs_its_own_pid_namespace(tmp_path, monkeypatch):
    """Members share the pod's user namespace, which owns the holder's and the other members' network
    namespaces: one that saw their processes could join them. Its own PID namespace hides them."""
    facts = HostFacts(uid=1000, gid=1000, pid=1, newuidmap="/usr/bin/newuidmap", newgidmap="/usr/bin/newgidmap",
                      subuids=[SubidRange(100000, 65536)], subgids=[SubidRange(100000, 65536)], pod_hosts="/h")
    asked = _spec(tmp_path, monkeypatch, pod="web")
    asked = asked.replace(namespaces=tuple(ns for ns in asked.namespaces if ns != "pid"))
    with pytest.raises(RootsandError) as e:
        plan.plan(asked, facts)
    assert e.value.message.startswith("--pod needs the pid namespace")
