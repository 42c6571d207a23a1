"""rootsand/export/ without a runtime: each kind of plan step as its OCI mount (or skeleton entry, or refusal),
the process, id maps, namespaces, sysctls and limits, the seccomp rules as OCI/Docker JSON, and the Pod
manifest checked for the structure Kubernetes requires. tests/integration/test_export_engines.py runs the bundles."""

import json
import re

import pytest

from rootsand.config import plan
from rootsand.config.idmap import IdPlan
from rootsand.config.plan import HomeGuard, MountStep, Network, Plan, Protected, Resolved
from rootsand.errors import RootsandError
from rootsand.export import kube, oci, seccomp
from rootsand.security import limits
from rootsand.security.seccomp.rules import Rule, default_rules
from test_plan import FACTS, make_spec, where  # noqa: F401 (where: the fixture)

BUNDLE = "/b"
NOTHING = lambda path: None  # noqa: E731 (no host path exists)


def step(type_, dst, **values) -> MountStep:
    """A mount step as plan.mount_step makes it, its flags decided."""
    from rootsand.config.model import Mount

    return plan.mount_step(Mount(type=type_, dst=dst, **values), None)


def a_plan(*steps, **values) -> Plan:
    values.setdefault("ids", IdPlan(uid_lines=[(0, 1000, 1), (1, 100000, 65536)],
                                    gid_lines=[(0, 1000, 1), (1, 100000, 65536)]))
    return Plan(name="s", profile="p", argv=["true"], chdir="/w", hostname="h", namespaces=["user", "mount", "net"],
                mounts=list(steps), **values)


def mounts(the_plan, exists=NOTHING) -> list[dict]:
    return oci.export_bundle(the_plan, "x86_64", BUNDLE, exists).config["mounts"]


def test_every_field_of_the_plan_has_its_place_in_the_exports():
    """A new field (a new wall) must be exported, refused or listed before an export can leave it out."""
    assert sorted(oci.PLAN_FIELDS) == sorted(Plan.FIELDS)
    assert sorted(oci.RESOLVED_FIELDS) == sorted(Resolved.FIELDS)


def test_binds_keep_their_flags():
    got = mounts(a_plan(step("bind", "/w", src="/home/a/w"), step("ro-bind", "/usr", src="/usr"),
                        step("dev-bind", "/dev/kvm", src="/dev/kvm")))
    assert got == [
        {"destination": "/w", "type": "bind", "source": "/home/a/w", "options": ["rbind", "rw", "nosuid", "nodev"]},
        {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid", "nodev"]},
        {"destination": "/dev/kvm", "type": "bind", "source": "/dev/kvm", "options": ["rbind", "rw", "nosuid"]}]


def test_a_tmpfs_keeps_its_mode_and_size_and_its_mount_point_has_that_mode():
    """runc gives a tmpfs the mode of an existing mount point: the skeleton's is the tmpfs's (1777 unset)."""
    bundle = oci.export_bundle(a_plan(step("tmpfs", "/tmp", mode=0o1777, size=1 << 20), step("tmpfs", "/scratch"),
                                      step("tmpfs", "/home/a")), "x86_64", BUNDLE, NOTHING)
    assert bundle.config["mounts"][0] == {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                          "options": ["nosuid", "nodev", "mode=1777", "size=1048576"]}
    assert bundle.dirs == {"tmp": 0o1777, "scratch": 0o1777, "home": 0o755, "home/a": 0o1777}


def test_proc_has_its_masked_and_read_only_paths():
    config = oci.export_bundle(a_plan(step("proc", "/proc")), "x86_64", BUNDLE, NOTHING).config
    assert config["mounts"] == [{"destination": "/proc", "type": "proc", "source": "proc",
                                 "options": ["nosuid", "nodev", "noexec"]}]
    assert "/proc/keys" in config["linux"]["maskedPaths"] and "/proc/acpi" in config["linux"]["maskedPaths"]
    assert config["linux"]["readonlyPaths"] == ["/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"]


def test_dev_is_a_tmpfs_with_pts_and_shm_and_is_said_to_be_writable():
    dev = step("dev", "/dev").replace(options={"mode": "0755", "size": "1m", "pts_max": "64", "shm_size": "1024"})
    bundle = oci.export_bundle(a_plan(dev), "x86_64", BUNDLE, NOTHING)
    assert [(m["destination"], m["type"]) for m in bundle.config["mounts"]] == [
        ("/dev", "tmpfs"), ("/dev/pts", "devpts"), ("/dev/shm", "tmpfs")]
    assert "max=64" in bundle.config["mounts"][1]["options"]
    assert "size=1024" in bundle.config["mounts"][2]["options"]
    assert any(line.startswith("/dev is writable") for line in bundle.listed)


def test_mqueue():
    assert mounts(a_plan(step("mqueue", "/dev/mqueue"))) == [
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "nodev", "noexec"]}]


def test_an_overlay_is_its_lower_directory_read_only_and_said():
    overlay = step("overlay", "/usr/local", lower=["/usr/local"]).replace(kind="fuse")
    bundle = oci.export_bundle(a_plan(overlay), "x86_64", BUNDLE, NOTHING)
    assert bundle.config["mounts"] == [{"destination": "/usr/local", "type": "bind", "source": "/usr/local",
                                        "options": ["rbind", "ro", "nosuid", "nodev"]}]
    assert "overlay /usr/local: /usr/local bound read-only (OCI runtimes mount no fuse-overlayfs): writes there " \
           "fail" in bundle.listed


def test_an_overlay_of_several_lower_directories_is_refused():
    with pytest.raises(RootsandError, match="an overlay of 2 lower directories cannot be exported"):
        mounts(a_plan(step("overlay", "/x", lower=["/a", "/b"])))


def test_links_and_directories_at_the_top_go_into_the_skeleton():
    bundle = oci.export_bundle(a_plan(step("symlink", "/bin", src="usr/bin"), step("dir", "/srv", mode=0o700)),
                               "x86_64", BUNDLE, NOTHING)
    assert (bundle.links, bundle.dirs, bundle.config["mounts"]) == ({"bin": "usr/bin"}, {"srv": 0o700}, [])


def test_the_mount_points_in_the_skeleton_are_made_as_files_or_directories_as_their_sources_are():
    """Every mount point not below an earlier mount is in the skeleton, so the runtime makes none as root inside
    (a subordinate id in the fakeroot profile); one below a link is the runtime's to resolve."""
    the_plan = a_plan(step("symlink", "/lib", src="usr/lib"), step("ro-bind", "/usr", src="/usr"),
                      step("ro-bind", "/opt/tool/config", src="/home/a/config"), step("bind", "/srv/data", src="/d"),
                      step("tmpfs", "/srv/data/cache"), step("ro-bind", "/lib/x", src="/x"))
    bundle = oci.export_bundle(the_plan, "x86_64", BUNDLE, lambda p: "file" if p == "/home/a/config" else "dir")
    assert bundle.dirs == {"usr": 0o755, "opt": 0o755, "opt/tool": 0o755, "srv": 0o755, "srv/data": 0o755}
    assert bundle.files == {"rootfs/opt/tool/config": ""} and bundle.links == {"lib": "usr/lib"}


def test_a_directory_op_inside_a_mount_is_said_not_made():
    bundle = oci.export_bundle(a_plan(step("tmpfs", "/tmp"), step("dir", "/tmp/d")), "x86_64", BUNDLE, NOTHING)
    assert "the directory /tmp/d is not made (OCI has no directory op)" in bundle.listed


def test_a_link_inside_a_mount_is_refused():
    with pytest.raises(RootsandError, match="a symlink at /tmp/x inside the mount on /tmp cannot be exported"):
        mounts(a_plan(step("tmpfs", "/tmp"), step("symlink", "/tmp/x", src="y")))


def test_a_file_op_is_a_generated_file_bound_read_only():
    bundle = oci.export_bundle(a_plan(step("file", "/etc/motd", content="hi\n")), "x86_64", BUNDLE, NOTHING)
    assert bundle.files == {"files/0_etc_motd": "hi\n"}
    assert bundle.config["mounts"] == [{"destination": "/etc/motd", "type": "bind", "source": "/b/files/0_etc_motd",
                                        "options": ["rbind", "ro", "nosuid", "nodev"]}]


def test_an_optional_mount_absent_on_the_host_is_left_out_as_rootsand_leaves_it():
    absent = step("bind", "/c", src="/nowhere", optional=True).replace(kind="absent")
    the_plan = a_plan(absent).replace(resolved=Resolved(mounts=[absent]))
    assert mounts(the_plan) == []


def test_the_home_rule_binds_the_home_read_only_and_its_existing_exceptions_writable():
    home = step("bind", "/home/a", src="/home/a")
    guard = HomeGuard(mount=0, home="/home/a", dst="/home/a", writable=[".cache/pip", ".npm"])
    got = mounts(a_plan(home, step("tmpfs", "/tmp"), home_guards=[guard]),
                 lambda p: "dir" if p == "/home/a/.cache/pip" else None)
    assert [(m["destination"], m["source"], m["options"][1]) for m in got] == [
        ("/home/a", "/home/a", "rw"), ("/home/a", "/home/a", "ro"), ("/home/a/.cache/pip", "/home/a/.cache/pip", "rw"),
        ("/tmp", "tmpfs", "nodev")]


def test_protected_paths_that_exist_are_read_only_binds_after_all_else_and_absent_ones_said():
    work = step("bind", "/w", src="/home/a/w")
    protected = [Protected(mount=0, path=".git/hooks", dst="/w/.git/hooks", directory=True),
                 Protected(mount=0, path=".envrc", dst="/w/.envrc")]
    resolved = Resolved(mounts=[work], protect={"covered": ["/home/a/w/.git/hooks"], "made": [], "pinned": [],
                                                "absent": ["/home/a/w/.envrc"]})
    bundle = oci.export_bundle(a_plan(work, protected=protected, etc_files={"hostname": "h\n"}, resolved=resolved),
                               "x86_64", BUNDLE, NOTHING)
    assert [(m["destination"], m["options"][1]) for m in bundle.config["mounts"]] == [
        ("/w", "rw"), ("/etc/hostname", "ro"), ("/w/.git/hooks", "ro")]
    assert bundle.config["mounts"][1]["source"] == "/b/files/etc/hostname"
    assert bundle.files == {"files/etc/hostname": "h\n"}
    assert "protected paths absent on the host (/home/a/w/.envrc) are not checked after the run" in bundle.listed


def test_with_rootfs_the_root_is_the_users_and_etc_files_go_only_over_existing_ones():
    """rootsand never makes a mount point among the user's files: nor does the bundle ask the runtime to."""
    the_plan = a_plan(rootfs="/r", etc_files={"hostname": "h\n", "hosts": "127.0.0.1 localhost\n"})
    bundle = oci.export_bundle(the_plan, "x86_64", BUNDLE, lambda path: "file" if path == "/r/etc/hosts" else None)
    assert bundle.config["root"] == {"path": "/r", "readonly": False}
    assert [m["destination"] for m in bundle.config["mounts"]] == ["/etc/hosts"] and bundle.dirs == {}
    assert "/etc/hostname is not exported: /r/etc has none to bind it over" in bundle.listed


def test_the_default_profiles_process_ids_and_namespaces(where):  # noqa: F811
    the_plan = plan.plan(make_spec(where, "default", command=["make", "all"]), FACTS)
    config = oci.export_bundle(the_plan, "x86_64", BUNDLE, NOTHING).config
    process = config["process"]
    assert (process["args"], process["cwd"], process["user"], process["noNewPrivileges"], process["terminal"]) == (
        ["make", "all"], the_plan.chdir, {"uid": 0, "gid": 0}, True, False)
    assert "TOKEN=secret" not in process["env"] and f"HOME={where}/home" in process["env"]
    assert process["capabilities"] == {"bounding": ["CAP_SETFCAP"], "effective": ["CAP_SETFCAP"],
                                       "permitted": ["CAP_SETFCAP"], "inheritable": [], "ambient": []}
    linux = config["linux"]
    assert linux["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1},
                                    {"containerID": 1, "hostID": 100000, "size": 65536}]
    assert [n["type"] for n in linux["namespaces"]] == ["user", "pid", "mount", "uts", "ipc", "network", "cgroup"]
    assert config["root"] == {"path": "/b/rootfs", "readonly": True} and config["hostname"] == "rootsand"
    assert linux["seccomp"]["syscalls"] and "sysctl" not in linux and "resources" not in linux


def test_rlimits_sysctls_and_cgroup_limits():
    the_limits = limits.Limits(rlimits={"nofile": 1024, "fsize": -1},
                               cgroup={"memory.max": "1073741824", "memory.swap.max": "0", "pids.max": "100",
                                       "cpu.max": "150000 100000"})
    bundle = oci.export_bundle(a_plan(limits=the_limits, sysctls={"user/max_user_namespaces": "0",
                                                                   "kernel/shmmax": "67108864"}),
                               "x86_64", BUNDLE, NOTHING)
    assert bundle.config["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                                                   {"type": "RLIMIT_FSIZE", "hard": (1 << 64) - 1,
                                                    "soft": (1 << 64) - 1}]
    assert bundle.config["linux"]["sysctl"] == {"kernel.shmmax": "67108864"}  # runc refuses user.*: said
    assert ("sysctl user.max_user_namespaces = 0 is not exported (runc refuses it); the seccomp rules still "
            "refuse new user namespaces") in bundle.listed
    assert bundle.config["linux"]["resources"] == {"memory": {"limit": 1 << 30, "swap": 1 << 30},
                                                   "pids": {"limit": 100}, "cpu": {"quota": 150000, "period": 100000}}


def test_the_proxy_mode_is_refused():
    proxied = a_plan(network=Network(mode="proxy", proxy_port=3128))
    for export in (lambda: oci.export_bundle(proxied, "x86_64", BUNDLE, NOTHING),
                   lambda: kube.manifest(proxied, "img", NOTHING)):
        with pytest.raises(RootsandError, match="the proxy network mode cannot be exported") as e:
            export()
        assert e.value.code == 125


def test_what_rootsand_does_around_the_command_is_listed():
    resolved = Resolved(audit={"tops": ["/w"], "known": [], "names": []}, setuid_tops=["/w"])
    listed = oci.export_bundle(a_plan(timeout=30.0, resolved=resolved, network=Network(mode="slirp")), "x86_64",
                               BUNDLE, NOTHING).listed
    assert "the timeout (30s) is not exported" in listed
    assert "the git check after the run (new hooks, config, repositories in /w) is not exported" in listed
    assert "setuid bits set during the run are not cleared at exit" in listed
    assert any(line.startswith("network slirp: a network namespace with loopback only") for line in listed)


def test_a_bundle_whose_root_is_a_subordinate_id_says_that_rootless_runc_refuses_it(where):  # noqa: F811
    said = ("root inside is one of your subordinate ids, not you: rootless runc refuses the bundle (it cannot "
            "chown its pipes to root); crun, or runc run by root, runs it")
    for name, expected in (("fakeroot", True), ("default", False)):
        the_plan = plan.plan(make_spec(where, name), FACTS)
        assert (said in oci.export_bundle(the_plan, "x86_64", BUNDLE, NOTHING).listed) == expected, name


def test_the_staging_of_the_parent_directory_is_left_out_and_said(where):  # noqa: F811
    """fakeroot's parent_products: the launcher makes the staging directory for the run; a bundle has no
    launcher, so the parent is what the other mounts make it and nothing is handed over."""
    the_plan = plan.plan(make_spec(where, "fakeroot"), FACTS)
    staging = the_plan.handover.staging
    assert staging and the_plan.mounts[the_plan.handover.mount].src == staging
    for export in (lambda: oci.export_bundle(the_plan, "x86_64", BUNDLE, NOTHING).listed,
                   lambda: kube.manifest(the_plan, "img", NOTHING)[1]):
        listed = export()
        assert (f"the hand-over after the run is not exported: what the command writes beside {the_plan.cwd} stays "
                f"inside; files it makes in {the_plan.cwd} keep the owner they have inside") in listed
    assert staging not in json.dumps(oci.export_bundle(the_plan, "x86_64", BUNDLE, NOTHING).config)
    assert staging not in json.dumps(kube.manifest(the_plan, "img", NOTHING)[0])


# ------------------------------------------------------------------------------------------------- seccomp

def test_masked_equality_has_the_mask_in_value_and_the_compared_value_in_value_two():
    rule = Rule("ioctl", 1, ((1, "MASKED_EQ", 0xFFFFFFFF, 0x5412),), "TIOCSTI")
    got = seccomp.seccomp_object([rule, Rule("shmget", 22, ((1, "GT", 1 << 26, 0),))], "x86_64")
    assert got["syscalls"] == [
        {"names": ["ioctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
         "args": [{"index": 1, "value": 0xFFFFFFFF, "valueTwo": 0x5412, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22,
         "args": [{"index": 1, "value": 1 << 26, "valueTwo": 0, "op": "SCMP_CMP_GT"}]}]
    assert got["defaultAction"] == "SCMP_ACT_ALLOW"


def test_rules_alike_share_an_entry_and_a_later_rule_for_the_same_call_wins():
    rules = [Rule("keyctl", 1), Rule("bpf", 1), Rule("bpf", 38, why="a rule file's errno")]
    assert seccomp.seccomp_object(rules, "x86_64")["syscalls"] == [
        {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
        {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]


def test_every_default_rule_is_in_the_export_once():
    rules = default_rules(False, limit_memfd=True, shm_max=1 << 26)
    got = seccomp.seccomp_object(rules, "x86_64")
    exported = sorted((name, entry["errnoRet"], json.dumps(entry.get("args", []))) for entry in got["syscalls"]
                      for name in entry["names"])
    assert exported == sorted((r.syscall, r.errno, json.dumps([seccomp._arg(*a) for a in r.args])) for r in rules)


def test_the_architectures_and_what_they_change():
    assert seccomp.architectures("x86_64", True) == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert seccomp.architectures("x86_64", False) == ["SCMP_ARCH_X86_64"]
    rules = default_rules(True)
    assert seccomp.differences(rules, "x86_64", True) == [
        "seccomp: on X86 (32-bit programs) the rules with arguments on socket, socketpair become rules on the "
        "socketcall(2)/ipc(2) multiplexer, which refuse more than rootsand does (every socket(2) of such a program)"]
    assert seccomp.differences(rules, "x86_64", False) == seccomp.differences(rules, "aarch64", True) == []
    with pytest.raises(RootsandError, match="no architecture names known for machine 'vax'"):
        seccomp.architectures("vax", True)


def test_comments_say_why_for_docker_and_podman():
    got = seccomp.seccomp_object([Rule("keyctl", 1, why="keys"), Rule("bpf", 1, why="ebpf")], "x86_64", comments=True)
    assert [(e["names"], e["comment"]) for e in got["syscalls"]] == [(["keyctl"], "keys"), (["bpf"], "ebpf")]


# ------------------------------------------------------------------------------------------------- kube

LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def check_pod(pod: dict) -> None:
    """What the API server checks of a Pod's structure: names, references between volume mounts and volumes,
    one mount per path, the security context's types."""
    assert (pod["apiVersion"], pod["kind"]) == ("v1", "Pod")
    assert LABEL.match(pod["metadata"]["name"]) and LABEL.match(pod["spec"]["hostname"])
    volumes = pod["spec"]["volumes"]
    names = [v["name"] for v in volumes]
    assert len(names) == len(set(names)) and all(LABEL.match(n) for n in names), names
    assert all(len(set(v) - {"name"}) == 1 for v in volumes)  # exactly one source each
    (container,) = pod["spec"]["containers"]
    paths = [m["mountPath"] for m in container["volumeMounts"]]
    assert len(paths) == len(set(paths)) and all(p.startswith("/") for p in paths)
    assert all(m["name"] in names and isinstance(m["readOnly"], bool) for m in container["volumeMounts"])
    assert all(not m.get("subPath", "x").startswith("/") for m in container["volumeMounts"])
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["privileged"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert all(isinstance(e["name"], str) and isinstance(e["value"], str) for e in container["env"])
    json.dumps(pod)  # JSON all the way down


@pytest.mark.parametrize("name", ["default", "build", "untrusted", "fakeroot", "net"])
def test_the_pod_manifest_of_each_profile_is_well_formed(where, name):  # noqa: F811
    the_plan = plan.plan(make_spec(where, name, command=["make"]), FACTS)
    pod, listed = kube.manifest(the_plan, "debian:12", NOTHING)
    check_pod(pod)
    (container,) = pod["spec"]["containers"]
    assert (container["image"], container["command"], container["workingDir"]) == ("debian:12", ["make"],
                                                                                   the_plan.chdir)
    assert pod["spec"]["hostUsers"] is False and pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "Localhost",
                                                               "localhostProfile": f"rootsand/{name}.json"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    usr = next(m for m in container["volumeMounts"] if m["mountPath"] == "/usr")
    assert usr["readOnly"] is True
    assert any(line.startswith("the seccomp profile: save `rootsand export seccomp --profile") for line in listed)


def test_the_pod_manifest_has_the_limits_the_user_and_the_protected_paths(where):  # noqa: F811
    the_plan = plan.plan(make_spec(where, "default", command=["id"], memory="1G", user="1000:1000"), FACTS)
    cwd = the_plan.cwd
    resolved = Resolved(mounts=the_plan.mounts,
                        protect={"covered": [f"{cwd}/.git/config"], "made": [], "pinned": [], "absent": []})
    pod, listed = kube.manifest(the_plan.replace(resolved=resolved), "img", NOTHING)
    check_pod(pod)
    (container,) = pod["spec"]["containers"]
    assert container["resources"] == {"limits": {"memory": str(1 << 30)}}
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    work = next(m for m in container["volumeMounts"] if m["mountPath"] == cwd)
    assert work["readOnly"] is False
    assert {"name": work["name"], "mountPath": f"{cwd}/.git/config", "readOnly": True,
            "subPath": ".git/config"} in container["volumeMounts"]
    assert any(line.startswith("network none: a Pod always has the cluster's network") for line in listed)


def test_the_timeout_is_the_pods_active_deadline(where):  # noqa: F811
    the_plan = plan.plan(make_spec(where, "untrusted"), FACTS)
    pod, listed = kube.manifest(the_plan, "img", NOTHING)
    assert pod["spec"]["activeDeadlineSeconds"] == 600 and not any(line.startswith("the timeout") for line in listed)
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"memory": str(1 << 30)}}


def test_a_tmpfs_is_a_memory_backed_empty_dir():
    pod, _ = kube.manifest(a_plan(step("tmpfs", "/tmp", size=1 << 20)), "img", NOTHING)
    assert pod["spec"]["volumes"] == [{"name": "t0-tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "1048576"}}]
