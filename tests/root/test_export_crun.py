"""crun on a host whose cgroup layout it refuses (v1 hierarchies beside a v2 mount, which the unprivileged
test can only assert): root hides the v2 mount in a private mount namespace, and there the unprivileged user
runs the exported bundle with crun. What the probes see must be what they see under `rootsand run`."""

import json
import os
import pwd
import shutil
import subprocess

import pytest

from conftest import HERE, rootsand_argv

TEST_USER = os.environ.get("ROOTSAND_TEST_USER", "rootsand-test")


def hybrid_mounts() -> list[str]:
    """The cgroup v2 mount points beside v1 hierarchies (none on a unified or a pure v1 host)."""
    with open("/proc/self/mountinfo") as f:
        mounts = [(line.split()[4], line.split(" - ")[1].split()[0]) for line in f if " - " in line]
    types = {kind for _, kind in mounts}
    return [point for point, kind in mounts if kind == "cgroup2"] if {"cgroup", "cgroup2"} <= types else []


def as_user(script: str, cwd: str, hide: list[str]) -> subprocess.CompletedProcess:
    """`sh -c SCRIPT` as the test user in `cwd`, in a mount namespace of its own where `hide` is unmounted."""
    user = pwd.getpwnam(TEST_USER)
    env = {"PATH": f"{os.path.dirname(rootsand_argv()[0])}:/usr/sbin:/usr/bin:/bin", "HOME": user.pw_dir,
           "USER": TEST_USER, "LANG": "C.UTF-8", "ROOTSAND": " ".join(rootsand_argv())}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    inner = f"cd {cwd} && exec /usr/sbin/runuser -u {TEST_USER} -- sh -c '{script}'"
    unmount = "".join(f"umount {point} && " for point in hide)
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", unmount + inner], env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture
def work():
    """A directory of the test user's, under its home, with the probe in it."""
    user = pwd.getpwnam(TEST_USER)
    top = os.path.join(user.pw_dir, f"export-crun-{os.getpid()}")
    os.mkdir(top)
    shutil.copy(os.path.join(HERE, "walls_probe.py"), top)
    for path in (top, os.path.join(top, "walls_probe.py")):
        os.chown(path, user.pw_uid, user.pw_gid)
    yield top
    shutil.rmtree(top)


def test_crun_runs_the_exported_bundle_with_rootsands_walls(work):
    ours = as_user("$ROOTSAND run -- python3 walls_probe.py && rm written-here", work, [])
    assert ours.returncode == 0, ours.stderr
    script = ("$ROOTSAND export oci -- python3 walls_probe.py $HOME/bundle-$$ 2>/dev/null && "
              "crun --root $HOME/crun-$$ run --bundle $HOME/bundle-$$ probe-$$; "
              "status=$?; rm -rf $HOME/bundle-$$ $HOME/crun-$$; exit $status")
    theirs = as_user(script, work, hybrid_mounts())
    assert theirs.returncode == 0, theirs.stderr
    got, expected = json.loads(theirs.stdout), json.loads(ours.stdout)
    assert got == expected
    assert (got["NoNewPrivs"], got["Seccomp"], got["write /usr"], got["write cwd"]) == ("1", "2", 30, 0)


def test_crun_runs_the_fakeroot_bundle_whose_root_is_a_subordinate_id(work):
    """fakeroot's root is one of the user's subordinate ids (rootless runc refuses that, and says so): under
    crun a chown inside gives the file that id's owner on the host, and the bundle is the user's to remove (its
    mount points were made in the skeleton, not by root inside)."""
    script = ("$ROOTSAND export oci --profile fakeroot -- sh -c \"touch made && chown 5:6 made\" $HOME/bundle-$$ "
              "2>/dev/null && cp $HOME/bundle-$$/config.json $HOME/config-$$.json && "
              "crun --root $HOME/crun-$$ run --bundle $HOME/bundle-$$ probe-$$; status=$?; "
              "rm -r $HOME/bundle-$$ $HOME/crun-$$ || status=99; exit $status")
    done = as_user(script, work, hybrid_mounts())
    assert done.returncode == 0, done.stderr
    home = pwd.getpwnam(TEST_USER).pw_dir
    config_path = max((os.path.join(home, n) for n in os.listdir(home) if n.startswith("config-")),
                      key=os.path.getmtime)
    with open(config_path) as f:
        config = json.load(f)
    os.unlink(config_path)

    def host_id(maps, inside):
        return next(m["hostID"] + inside - m["containerID"] for m in maps
                    if m["containerID"] <= inside < m["containerID"] + m["size"])

    st = os.stat(os.path.join(work, "made"))
    assert (st.st_uid, st.st_gid) == (host_id(config["linux"]["uidMappings"], 5),
                                      host_id(config["linux"]["gidMappings"], 6))
    assert host_id(config["linux"]["uidMappings"], 0) != pwd.getpwnam(TEST_USER).pw_uid
