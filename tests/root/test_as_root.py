"""What only real root can set up: rootsand run by root, by a user without ranges, with user namespaces off."""

import json
import os
import pwd
import subprocess
import sys

from conftest import rootsand_argv, sandbox

TEST_USER = os.environ.get("ROOTSAND_TEST_USER", "rootsand-test")
NOSUB_USER = os.environ.get("ROOTSAND_NOSUB_USER", "rootsand-nosub")


def as_user(user: str, *args: str) -> subprocess.CompletedProcess:
    """`rootsand ARGS` run by another user, from a directory that user can enter."""
    home = pwd.getpwnam(user).pw_dir
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "USER": user, "LANG": "C.UTF-8"}
    return subprocess.run(["/usr/sbin/runuser", "-u", user, "--", *rootsand_argv(), *args], env=env, cwd="/",
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_root_gets_an_identity_map_written_directly():
    r = sandbox("sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map", check_rc=0)
    lines = [line.split() for line in r.stdout.splitlines()]
    assert lines[0] == ["0"]
    assert lines[1:] == [["0", "0", "4294967295"], ["0", "0", "4294967295"]]
    assert sandbox("readlink", "/proc/self/ns/user", check_rc=0).stdout.strip() != os.readlink("/proc/self/ns/user")


def test_user_without_ranges_gets_one_id_and_one_note():
    uid = pwd.getpwnam(NOSUB_USER).pw_uid
    r = as_user(NOSUB_USER, "run", "--", "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/setgroups")
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out == ["0", "0", str(uid), "1", "deny"]
    notes = [line for line in r.stderr.splitlines() if line.startswith("rootsand:")]
    assert len(notes) == 1 and "/etc/subuid" in notes[0]


def test_user_without_ranges_keep_id():
    uid = pwd.getpwnam(NOSUB_USER).pw_uid
    r = as_user(NOSUB_USER, "run", "--user", "keep-id", "--", "id", "-u")
    assert r.returncode == 0 and r.stdout.strip() == str(uid), r.stderr


def test_unusable_dev_net_tun_is_125_with_a_hint():
    mode = os.stat("/dev/net/tun").st_mode & 0o7777
    os.chmod("/dev/net/tun", 0o600)
    try:
        r = as_user(TEST_USER, "run", "--net", "slirp", "--", "true")
    finally:
        os.chmod("/dev/net/tun", mode)
    lines = r.stderr.splitlines()
    assert r.returncode == 125, r.stderr
    assert lines[0].startswith("rootsand: error: slirp4netns failed")
    assert lines[1].startswith("rootsand: hint: /dev/net/tun is not usable")


def test_run_by_root_no_link_is_trusted_for_its_owner(tmp_path):
    """Run by root, a sandbox's files are root's: a root-owned link may be planted too."""
    secret = tmp_path / "secret-dir"
    secret.mkdir()
    (secret / "key").write_text("root's key\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "dist").symlink_to(secret)
    r = sandbox("cat", "/dep/key", opts=["--ro-bind", "./dist:/dep"], cwd=project, check_rc=125)
    assert r.stderr.splitlines()[0] == (
        f"rootsand: error: --ro-bind ./dist:/dep: {project}/dist is a symbolic link (to {secret}) inside {project}, "
        "which the sandbox can write: it is not followed")
    assert "root's key" not in r.stdout


def test_unshare_without_ranges_maps_one_id_and_says_so():
    uid = pwd.getpwnam(NOSUB_USER).pw_uid
    r = as_user(NOSUB_USER, "unshare", "--", "sh", "-c", "id -u; cat /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0", str(uid), "1"]
    assert r.stderr.splitlines() == [
        "rootsand: warning: no range for you in /etc/subuid: the sandbox maps only your own id (rootsand doctor "
        "names a free range to add, which no other user has): files of other ids cannot be changed"]


def test_doctor_names_a_range_no_other_user_has():
    """The hint gave 100000-165535, which useradd gives the first user: the two would share ids."""
    r = as_user(NOSUB_USER, "doctor", "--json")
    fix = next(c["fix"] for c in json.loads(r.stdout) if c["name"] == "/etc/subuid")
    first, last = (int(n) for n in fix.split("--add-subuids ")[1].split()[0].split("-"))
    assert last - first == 65535
    for path in ("/etc/subuid", "/etc/subgid"):
        with open(path) as f:
            for line in f:
                owner, start, count = line.strip().split(":")
                assert int(start) + int(count) <= first or last < int(start), (path, line)


def test_fakeroot_without_ranges_runs_and_says_first_that_chown_to_other_ids_fails():
    r = as_user(NOSUB_USER, "run", "--profile", "fakeroot", "--chdir", "/tmp", "--", "sh", "-c",
                "touch /tmp/f && chown 33:33 /tmp/f")
    lines = r.stderr.splitlines()
    assert r.returncode == 1, r.stderr
    # Before the run, as a fact of the sandbox; no hint after it (rootsand cannot tell why a command failed)
    assert lines[0].startswith("rootsand: warning: no range for you in /etc/subuid: the sandbox maps only your own id")
    assert lines[0].endswith(": chown to any other id fails with 'Invalid argument'")
    assert "chown: changing ownership of '/tmp/f': Invalid argument" in lines
    assert not any(line.startswith("rootsand: hint:") for line in lines)


def test_another_users_directory_in_tmp_does_not_stop_rootsand():
    """Issue 18, finding 6, as the attacker did it: another local user's `mkdir -m 0700 /tmp/rootsand-UID`
    stopped every command of a user without $XDG_RUNTIME_DIR, and only root could remove it. The victim is a
    user made for the test (with subordinate ranges): the test user's /tmp/rootsand-UID serves other runs."""
    import glob
    import shutil
    import time
    import uuid

    user = f"rs-victim-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", user], check=True)
    entry = pwd.getpwnam(user)
    shared = f"/tmp/rootsand-{entry.pw_uid}"
    env = {"PATH": "/usr/bin:/bin", "HOME": entry.pw_dir, "USER": user, "LANG": "C.UTF-8",
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}  # the code under test, in dev runs

    def victim(*args, wait=True):
        argv = ["/usr/sbin/runuser", "-u", user, "--", *rootsand_argv(), *args]
        if not wait:
            return subprocess.Popen(argv, env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        return subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)

    launcher = None
    try:
        # Free ranges, as tests/run.sh gives its users: a fixed one overlapped what useradd had just given
        # this user on a machine with more users (two overlapping lines: newuidmap's write fails)
        tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        subprocess.run([sys.executable, os.path.join(tests, "subids.py"), user], check=True)
        subprocess.run(["/usr/sbin/runuser", "-u", NOSUB_USER, "--", "mkdir", "-m", "0700", shared], check=True)
        taker = pwd.getpwnam(NOSUB_USER).pw_uid
        launcher = victim("run", "--name", "mine", "--", "sleep", "60", wait=False)
        deadline = time.monotonic() + 30
        while "mine" not in victim("ps", "-q").stdout.split() and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.1)
        r = victim("exec", "mine", "--", "id", "-u")
        assert r.returncode == 0 and r.stdout == "0\n", r.stderr
        fallback, = glob.glob(f"{shared}-*")
        assert r.stderr == f"rootsand: warning: {shared} belongs to uid {taker}: using {fallback}\n"
        st = os.lstat(fallback)
        assert st.st_uid == entry.pw_uid and st.st_mode & 0o7777 == 0o700 and os.listdir(shared) == []
        # The taker gives the name back: the running sandbox stays in reach, the name in /tmp stays free.
        subprocess.run(["/usr/sbin/runuser", "-u", NOSUB_USER, "--", "rmdir", shared], check=True)
        r = victim("ps", "-q")
        assert r.stdout.split() == ["mine"] and r.stderr == "" and not os.path.lexists(shared), r.stderr
        assert victim("stop", "mine").returncode == 0
        launcher.wait(timeout=30)
        assert launcher.returncode == 143, launcher.stderr.read()
    finally:
        if launcher and launcher.poll() is None:
            launcher.kill()
            launcher.wait()
        for path in [shared, *glob.glob(f"{shared}-*")]:
            shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["userdel", "--remove", user], stderr=subprocess.DEVNULL)
        for path in ("/etc/subuid", "/etc/subgid"):
            with open(path) as f:
                lines = [line for line in f if not line.startswith(f"{user}:")]
            with open(path, "w") as f:
                f.writelines(lines)
