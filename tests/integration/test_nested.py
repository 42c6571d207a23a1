"""rootsand where its users are: inside a sandbox of its own (whose /proc/sys is read-only, as in most
containers), with one id to map, no setuid helpers and only the devices the outer sandbox lets through."""

import os
import sys

from conftest import rootsand_argv, sandbox

NESTED = "rootsand: warning: running inside another user namespace (a sandbox or container): the sandbox maps only your own id"


def outer(*command, opts=(), **kwargs):
    """`rootsand run` of a sandbox that can run rootsand: the installed package visible read-only."""
    return sandbox(*command, opts=["--ro-bind", sys.prefix, *opts], **kwargs)


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


def test_an_overlay_of_the_outer_sandboxs_protected_directory_is_one_clear_error(tmp_path):
    """The kernel refuses to overlay a directory holding mounts locked by an outer user namespace (the
    outer sandbox's protected paths, which the inner one must not be able to peel off)."""
    r = outer("sh", "-c", f"{inner()} run --profile untrusted -- true; echo status=$?", cwd=tmp_path, check_rc=0)
    assert r.stdout == "status=125\n"
    errors = [line for line in r.stderr.splitlines() if line.startswith("rootsand: error:")]
    assert len(errors) == 1 and errors[0].startswith("rootsand: error: profile ")
    assert errors[0].endswith(f"untrusted.toml, line 27: overlay on {tmp_path}: {tmp_path} holds mounts of the "
                              "sandbox this one runs in (its protected paths), and the kernel does not overlay such a "
                              "directory from a nested user namespace"), errors
    r = outer("sh", "-c", f"{inner()} run --profile untrusted -- true; echo status=$?", cwd=tmp_path,
              opts=[arg for path in (".git/hooks", ".git/config", ".gitmodules", ".envrc", ".vscode", ".idea")
                    for arg in ("--unprotect", path)], check_rc=0)
    assert r.stdout == "status=0\n", r.stderr


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
