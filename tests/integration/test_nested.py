"""rootsand where its users are: inside a sandbox of its own (whose /proc/sys is read-only, as in most
containers), with one id to map, no setuid helpers and only the devices the outer sandbox lets through."""

import os
import subprocess
import sys

from conftest import rootsand_argv, sandbox

NESTED = "rootsand: warning: running inside another user namespace (a sandbox or container): the sandbox maps only your own id"


def outer(*command, opts=(), **kwargs):
    """`rootsand run` of a sandbox that can run rootsand: the installed package visible read-only."""
    # a PYTHONPATH that points the tests at a copy of the code reaches the inner rootsand too
    extra = [arg for entry in filter(None, os.environ.get("PYTHONPATH", "").split(":"))
             for arg in ("--ro-bind", entry)] + (["-e", "PYTHONPATH=" + os.environ["PYTHONPATH"]]
                                                  if os.environ.get("PYTHONPATH") else [])
    return sandbox(*command, opts=["--ro-bind", sys.prefix, *extra, *opts], **kwargs)


def inner() -> str:
    return " ".join(rootsand_argv())


def test_rootsand_runs_inside_rootsand(tmp_path):
    r = outer("sh", "-c", f"{inner()} run -- sh -c 'id -u; cat /proc/self/uid_map; echo from-inside > inner.txt'",
              cwd=tmp_path, check_rc=0)
    lines = r.stdout.splitlines()
    assert lines[0] == "0" and lines[1].split() == ["0", "0", "1"]  # root inside, mapped to the outer's root
    assert NESTED in r.stderr.splitlines()
    assert (tmp_path / "inner.txt").read_text() == "from-inside\n"  # the inner sandbox's writable directory


def test_doctor_inside_says_what_the_nesting_changes(tmp_path):
    r = outer("sh", "-c", f"{inner()} doctor; echo status=$?", cwd=tmp_path, check_rc=0)
    checks = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines() if line[:1] != " " and " " in line}
    assert checks["nesting"] == "degraded" and "running inside another user namespace" in r.stdout
    assert checks["/proc/sys"] == "degraded" and "read-only (a container or sandbox)" in r.stdout
    assert checks["newuidmap"] == "degraded"
    assert checks["/dev/net/tun"] == "missing" and "a dev-bind of /dev/net/tun" in r.stdout
    assert r.stdout.splitlines()[-1] == "status=1"


def test_untrusted_inside_a_sandbox_with_a_read_only_proc_sys(tmp_path):
    """The sysctls cannot be written there: seccomp alone blocks nested user namespaces, and the limits hold."""
    bomb = ("import os, resource, signal\nprint(resource.getrlimit(resource.RLIMIT_NPROC)[0])\nchildren = []\n"
            "try:\n    while len(children) < 1000:\n        pid = os.fork()\n        if pid == 0:\n"
            "            signal.pause()\n        children.append(pid)\nexcept OSError as e:\n"
            "    print(len(children) < 300, e.strerror)\nfor pid in children:\n    os.kill(pid, signal.SIGKILL)\n")
    (tmp_path / "work").mkdir()  # below the outer sandbox's protected paths: see the next test
    (tmp_path / "work" / "bomb.py").write_text(bomb)
    script = (f"cd work && {inner()} run -v --profile untrusted -- sh -c "
              "'unshare -U true 2>&1; echo unshare=$?; python3 bomb.py; cat /proc/sys/user/max_user_namespaces'")
    r = outer("sh", "-c", script, cwd=tmp_path, check_rc=0)
    lines = r.stdout.splitlines()
    assert lines[0] == "unshare: unshare failed: Operation not permitted" and lines[1] == "unshare=1"
    assert lines[2] == "256"
    assert lines[3] == "True Resource temporarily unavailable"
    # The sysctl is set where the sandbox's own /proc can be written, and said to be missing where not.
    said = any(line.startswith("rootsand: not set, the seccomp rules and rlimits stand alone: "
                               "/proc/sys/user/max_user_namespaces = 0: Read-only file system")
               for line in r.stderr.splitlines())
    assert said != (lines[4] == "0"), (lines[4], r.stderr)


def test_slirp_inside_a_sandbox_that_lets_dev_net_tun_through(tmp_path):
    profile = tmp_path / "tun.toml"
    profile.write_text('extends = "default"\n[[mount]]\ntype = "dev-bind"\nsrc = "/dev/net/tun"\n'
                       'dst = "/dev/net/tun"\n')
    (tmp_path / "work").mkdir()
    r = outer("sh", "-c", f"{inner()} run --net slirp -- sh -c 'ip -4 -o addr show dev tap0; cat /etc/resolv.conf'",
              opts=["-p", str(profile)], cwd=tmp_path / "work", check_rc=0)
    assert "inet 10.0.2.100/24" in r.stdout and "nameserver 10.0.2.3" in r.stdout
    # The outer /proc/sys is read-only: IPv6 waits for duplicate address detection, and rootsand says so.
    assert ("rootsand: warning: the sandbox's IPv6 address waits 1-2 s for duplicate address detection: "
            "/proc/sys/net/ipv6/conf/all/accept_dad: Read-only file system (a read-only /proc/sys)") in r.stderr


def test_a_read_only_proc_sys_is_no_error_for_the_profiles(tmp_path):
    (tmp_path / "work").mkdir()
    for profile in ("default", "untrusted", "build", "fakeroot", "agent"):
        r = outer("sh", "-c", f"cd work && {inner()} run --profile {profile} -- true; echo status=$?", cwd=tmp_path,
                  check_rc=0)
        assert r.stdout == "status=0\n", (profile, r.stderr)
        assert "rootsand: error" not in r.stderr


def test_untrusted_inside_a_default_sandbox_from_the_same_directory_works(tmp_path):
    # Issue 18, finding 8: nothing is made for the run in the default profile, so a directory without
    # protected paths holds no mounts of the outer sandbox, and the inner overlay works.
    (tmp_path / "data").write_text("mine\n")
    script = f"{inner()} run --profile untrusted -- sh -c 'cat data; echo x > data; cat data'; echo status=$?"
    r = outer("sh", "-c", script, cwd=tmp_path, check_rc=0)
    assert r.stdout == "mine\nx\nstatus=0\n", r.stderr
    assert (tmp_path / "data").read_text() == "mine\n"  # the inner writes were thrown away
    assert "rootsand: error" not in r.stderr


def test_untrusted_inside_a_default_sandbox_over_a_repository_gets_a_read_only_directory(tmp_path):
    """The outer sandbox's protected paths (.git/hooks, .git/config) are mounts, locked for the inner one,
    and the kernel overlays no directory holding locked mounts: the inner sandbox gets the directory read-only
    instead (nothing reaches the host), with one warning."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "data").write_text("mine\n")
    script = f"{inner()} run --profile untrusted -- sh -c 'cat data; echo x > data'; echo status=$?"
    r = outer("sh", "-c", script, cwd=tmp_path, check_rc=0)
    assert r.stdout == "mine\nstatus=2\n", r.stderr
    assert "sh: 1: cannot create data: Read-only file system" in r.stderr.splitlines()
    assert (f"rootsand: warning: overlay on {tmp_path}: {tmp_path} holds mounts of the sandbox this one runs in (its "
            "protected paths), which the kernel does not overlay from a nested user namespace: "
            f"{tmp_path} is read-only instead") in r.stderr.splitlines()
    assert (tmp_path / "data").read_text() == "mine\n"


def test_the_status_file_inside_names_every_namespace(tmp_path):
    r = outer("sh", "-c", f"{inner()} run --json-status st.json -- true && cat st.json", cwd=tmp_path, check_rc=0)
    first = r.stdout.splitlines()[0]
    assert all(f'"{ns}":' in first for ns in ("user", "mount", "uts", "ipc", "net", "cgroup", "pid")), first
    assert os.path.exists(tmp_path / "st.json")


def test_root_of_another_user_namespace_does_not_take_real_roots_runtime_directory(tmp_path):
    """Run as uid 0 of a user namespace with the host's /tmp, the private directory is named by the host's
    uid: /tmp/rootsand-0 would block real root's rootsand."""
    import subprocess

    before = os.path.exists("/tmp/rootsand-0")
    done = subprocess.run(["unshare", "--user", "--map-root-user", *rootsand_argv(), "run", "--name", "as-zero",
                           "--", "true"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"})
    assert done.returncode == 0, done.stderr
    assert os.path.exists("/tmp/rootsand-0") == before
    assert os.path.isdir(f"/tmp/rootsand-{os.getuid()}")


def test_the_outer_proc_is_said(tmp_path):
    """The outer sandbox covers parts of its /proc (kcore, keys, ...) with mounts, and a kernel may then refuse
    a new procfs in a user namespace (whether it does depends on its version and on what else is mounted: in
    a systemd-nspawn container it allowed it). The plan's rule for /proc says so (--dry-run shows it); where
    the inner sandbox gets the outer /proc (the same file system), a warning says so, and only there (it was
    a silent fallback, seen only with -v)."""
    import json

    script = (f"{inner()} run --dry-run -- true > plan.json && stat -c %d /proc && "
              f"{inner()} run -- stat -c %d /proc")
    r = outer("sh", "-c", script, cwd=tmp_path, check_rc=0)
    outer_dev, inner_dev = r.stdout.split()
    steps = json.loads((tmp_path / "plan.json").read_text())["resolved"]["mounts"]
    assert [s["kind"] for s in steps if s["type"] == "proc"] == ["new-or-outer"]
    warnings = [line for line in r.stderr.splitlines() if line.startswith("rootsand: warning: /proc: ")]
    said = ["rootsand: warning: /proc: the kernel mounts no new procfs here (parts of this /proc are covered, as "
            "in a container or another sandbox): the sandbox sees the outer one, with the processes outside it"]
    assert warnings == (said if inner_dev == outer_dev else []), (outer_dev, inner_dev, r.stderr)
