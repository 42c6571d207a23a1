"""`rootsand export`: the exported bundle run by rootless runc (and crun where the host's cgroup layout lets
it) as the unprivileged user shows the walls `rootsand run` shows with the same profile: the same id maps and
ids, no capabilities but the profile's, NoNewPrivs, the seccomp filter answering every probe of
tests/seccomp_probes.py as rootsand's does (TIOCSTI, AF_VSOCK, keyctl, ...), /usr and /etc read-only, the
working directory writable and the write on the host as the user's, $HOME a throw-away tmpfs, /proc/keys
masked, the rlimits, loopback only. `export seccomp` is loaded by runc, and refusals are one error line.
"""

import json
import os
import shutil
import subprocess

import pytest

import seccomp_probes as probes
import walls_probe
from conftest import CRUN_HYBRID, run

pyseccomp = pytest.importorskip("pyseccomp")

NUMBERS = json.dumps({name: pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
                      for name in probes.syscalls(probes.table() + probes.benign_calls(probes.table()))})
# A profile of its own: default with rlimits, nested user namespaces refused (the seccomp rules and a sysctl
# that runc cannot set), and setuid bits allowed: every group of rules on and off.
LIMITED = """extends = "default"
[security]
nested_userns = false
[limits]
rlimits = { nofile = 512, core = 0, fsize = "1G" }
"""


def hybrid_cgroups() -> bool:
    """A cgroup v2 mount beside v1 hierarchies (systemd's hybrid layout) whose v2 hierarchy has controllers:
    crun refuses to run only there (an empty /sys/fs/cgroup/unified/cgroup.controllers, as in a
    systemd-nspawn container on a hybrid host, it accepts)."""
    with open("/proc/self/mountinfo") as f:
        types = [line.split(" - ")[1].split()[0] for line in f if " - " in line]
    if not ("cgroup2" in types and "cgroup" in types):
        return False
    try:
        with open("/sys/fs/cgroup/unified/cgroup.controllers") as f:
            return bool(f.read().strip())
    except OSError:
        return False


@pytest.fixture
def work(tmp_path):
    """The user's project: a fresh directory under $HOME, as `rootsand run` is used, with the probes in it."""
    top = os.path.join(os.environ["HOME"], f"export-test-{os.getpid()}-{os.path.basename(tmp_path)}")
    os.mkdir(top)
    shutil.copy(walls_probe.__file__, os.path.join(top, "walls_probe.py"))
    shutil.copy(probes.__file__, os.path.join(top, "seccomp_probes.py"))
    yield top
    shutil.rmtree(top)


def profile_opts(tmp_path, name: str) -> list[str]:
    if name != "limited":
        return ["--profile", name]
    path = tmp_path / "limited.toml"
    path.write_text(LIMITED)
    return ["--profile", str(path)]


def in_rootsand(work: str, opts: list[str], command: list[str]) -> subprocess.CompletedProcess:
    return run(["run", *opts, "--", *command], cwd=work, check_rc=0)


def export(tmp_path, work: str, opts: list[str], command: list[str], name: str = "bundle") -> str:
    bundle = str(tmp_path / name)
    done = run(["export", "oci", *opts, "--", *command, bundle], cwd=work, check_rc=0)
    assert "rootsand: error" not in done.stderr and done.stdout == "", done.stderr
    return bundle


def in_runtime(runtime: str, tmp_path, bundle: str, work: str, check: bool = True) -> subprocess.CompletedProcess:
    """`RUNTIME --root STATE run --bundle BUNDLE ID` as this user: rootless, its state in a directory of ours."""
    state = tmp_path / f"{runtime}-state"
    state.mkdir(exist_ok=True)
    done = subprocess.run([shutil.which(runtime), "--root", str(state), "run", "--bundle", bundle,
                           f"rootsand-test-{os.getpid()}-{os.path.basename(bundle)}"],
                          cwd=work, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    if check:
        assert done.returncode == 0, (runtime, done.returncode, done.stderr)
    return done


def walls(done: subprocess.CompletedProcess, profile: str = "limited") -> dict:
    """The probe's answers; the rlimits only where the profile sets them (else they are the caller's: runc,
    written in Go, raises its soft NOFILE limit to the hard one)."""
    got = json.loads(done.stdout.splitlines()[-1])
    return got if profile == "limited" else {k: v for k, v in got.items() if k not in ("nofile", "core", "fsize")}


WALLS = ["python3", "walls_probe.py"]
SECCOMP = ["python3", "seccomp_probes.py", "--json", "--numbers", NUMBERS]


def clean(work: str) -> None:
    for name in ("written-here", "f"):
        if os.path.exists(os.path.join(work, name)):
            os.unlink(os.path.join(work, name))


@pytest.mark.parametrize("name", ["default", "build", "limited"])
def test_runc_runs_the_bundle_with_rootsands_walls(tmp_path, work, name):
    opts = profile_opts(tmp_path, name)
    home_file = os.path.join(os.environ["HOME"], "written-in-home")
    ours = walls(in_rootsand(work, opts, WALLS), name)
    clean(work)
    theirs = walls(in_runtime("runc", tmp_path, export(tmp_path, work, opts, WALLS), work), name)
    assert theirs == ours
    # and what those answers are, for the record: the user's own walls, not merely equal ones
    assert (theirs["ids"], theirs["uid_map"][:3], theirs["NoNewPrivs"], theirs["Seccomp"]) == (
        [0, 0], ["0", str(os.getuid()), "1"], "1", "2")
    assert int(theirs["CapEff"], 16) == 1 << 31  # CAP_SETFCAP, the default profile's one capability
    assert (theirs["write cwd"], theirs["write /usr"], theirs["write /etc"]) == (0, 30, 30)  # EROFS
    assert theirs["write home"] == 0 and not os.path.exists(home_file)  # a tmpfs: nothing reaches the host
    assert theirs["/proc/keys"] == "" and theirs["interfaces"] == ["lo"] and not theirs["/proc/sys writable"]
    assert theirs["session leader"] is True
    st = os.stat(os.path.join(work, "written-here"))
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    if name == "limited":
        assert (theirs["nofile"], theirs["core"], theirs["fsize"]) == ([512, 512], [0, 0], [1 << 30, 1 << 30])


@pytest.mark.parametrize("name", ["default", "limited"])
def test_runcs_seccomp_filter_answers_every_probe_as_rootsands(tmp_path, work, name):
    opts = profile_opts(tmp_path, name)
    ours = json.loads(in_rootsand(work, opts, SECCOMP).stdout)
    clean(work)
    theirs = json.loads(in_runtime("runc", tmp_path, export(tmp_path, work, opts, SECCOMP), work).stdout)
    assert theirs == ours
    assert theirs["ioctl TIOCSTI"] == theirs["ioctl TIOCSTI|1<<32"] == 1  # EPERM
    assert theirs["socket AF_VSOCK"] == 97  # EAFNOSUPPORT
    if name == "limited":
        assert theirs["unshare CLONE_NEWUSER"] == 1


def test_the_build_profiles_caches_are_writable_and_its_overlays_read_only(tmp_path, work):
    """build: the pip cache bound writable (made on the host as `run` makes it), /usr/local's throw-away
    overlay a read-only bind under runc (said on stderr), no write reaching the host's /usr/local."""
    cache = os.path.join(os.environ["HOME"], ".cache", "pip")
    bundle = str(tmp_path / "bundle")
    done = run(["export", "oci", "--profile", "build", "--", *WALLS, "--write", f"{cache}/probe", "/usr/local/probe",
                bundle], cwd=work, check_rc=0)
    assert "rootsand: warning: export: overlay /usr/local: /usr/local bound read-only" in done.stderr
    theirs = walls(in_runtime("runc", tmp_path, bundle, work), "build")
    assert (theirs[f"write {cache}/probe"], theirs["write /usr/local/probe"]) == (0, 30)
    assert os.stat(f"{cache}/probe").st_uid == os.getuid()
    os.unlink(f"{cache}/probe")


def test_crun_runs_the_bundle_where_the_cgroup_layout_allows(tmp_path, work):
    bundle = export(tmp_path, work, [], WALLS)
    done = in_runtime("crun", tmp_path, bundle, work, check=False)
    if hybrid_cgroups():
        # The host's fact, asserted: crun refuses every container where it sees v1 and v2 hierarchies.
        assert done.returncode != 0 and "hybrid" in done.stderr, done.stderr
        pytest.skip(CRUN_HYBRID)
    assert done.returncode == 0, done.stderr
    ours = walls(in_rootsand(work, [], WALLS), "default")
    assert walls(done, "default") == ours


def test_the_exported_seccomp_profile_loads_in_runc(tmp_path, work):
    """`export seccomp` is the linux.seccomp object runc loads: put in a bundle instead of the exported one, the
    command meets the same refusals."""
    profile = run(["export", "seccomp", "--profile", "default"], check_rc=0).stdout
    data = json.loads(profile)
    assert data["defaultAction"] == "SCMP_ACT_ALLOW" and all("comment" in entry for entry in data["syscalls"])
    bundle = export(tmp_path, work, [], SECCOMP)
    config_path = os.path.join(bundle, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config["linux"]["seccomp"] = data
    with open(config_path, "w") as f:
        json.dump(config, f)
    theirs = json.loads(in_runtime("runc", tmp_path, bundle, work).stdout)
    assert (theirs["ioctl TIOCSTI"], theirs["socket AF_VSOCK"], theirs["Seccomp"]) == (1, 97, "2")


def test_export_kube_prints_a_pod_and_lists_what_it_cannot_express(tmp_path, work):
    done = run(["export", "kube", "--profile", "build", "--image", "debian:bookworm-slim", "--", "make"], cwd=work,
               check_rc=0)
    pod = json.loads(done.stdout)
    (container,) = pod["spec"]["containers"]
    assert (pod["kind"], container["image"], container["command"], container["workingDir"]) == (
        "Pod", "debian:bookworm-slim", ["make"], work)
    mounted = {m["mountPath"]: m for m in container["volumeMounts"]}
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mounted[work]["name"])
    assert (volume["hostPath"]["path"], mounted[work]["readOnly"], mounted["/usr"]["readOnly"]) == (work, False, True)
    lines = done.stderr.splitlines()
    assert lines and all(line.startswith("rootsand: warning: ") for line in lines), lines
    assert "rootsand: warning: export: network none: a Pod always has the cluster's network; a NetworkPolicy " \
           "denying all ingress and egress comes closest" in lines


def test_the_proxy_mode_is_refused_with_one_error_line(tmp_path, work):
    bundle = tmp_path / "bundle"
    done = run(["export", "oci", "--profile", "agent", "--", "true", str(bundle)], cwd=work)
    assert done.returncode == 125 and done.stdout == ""
    assert done.stderr.splitlines()[0] == ("rootsand: error: the proxy network mode cannot be exported: OCI runtimes "
                                           "run no filtering proxy, and the command's only way out would be gone")
    assert not bundle.exists()
    done = run(["export", "kube", "--profile", "agent", "--", "true"], cwd=work)
    assert done.returncode == 125 and done.stdout == "" and "proxy network mode" in done.stderr


def test_a_bundle_directory_that_is_not_empty_or_a_link_is_refused(tmp_path, work):
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "mine").write_text("keep\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    for name in ("bundle", "link"):
        done = run(["export", "oci", "--", "true", str(tmp_path / name)], cwd=work)
        assert (done.returncode, done.stderr.splitlines()) == (125, [
            f"rootsand: error: {tmp_path}/{name}: the bundle's directory must be a new or an empty directory of "
            "yours"])
    assert (os.listdir(tmp_path / "bundle"), os.listdir(tmp_path / "empty")) == (["mine"], [])
