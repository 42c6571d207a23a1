"""The command line itself: help, version, and bad input as one error line with status 125."""

import json
import os
import subprocess

import pytest

from conftest import rootsand_argv, run


def test_version_and_help():
    from rootsand import __version__

    assert run(["--version"], check_rc=0).stdout.strip() == f"rootsand {__version__}"
    out = run(["--help"], check_rc=0).stdout
    assert "run" in out
    out = run(["run", "--help"], check_rc=0).stdout
    for option in ("--hostname", "--chdir", "--env", "--user", "--timeout", "--name", "--json-status"):
        assert option in out


@pytest.mark.parametrize("args,needle", [
    (["run", "--bogus", "--", "true"], "No such option"),
    (["run", "--timeout", "abc", "--", "true"], "invalid timeout"),
    (["run", "--timeout", "-1", "--", "true"], "invalid timeout"),
    (["run", "--user", "nobody", "--", "true"], "invalid user"),
    (["run", "-e", "NOEQUALS", "--", "true"], "KEY=VALUE"),
    (["run", "--hostname", "a b", "--", "true"], "invalid hostname"),
    (["run", "--name", "../x", "--", "true"], "invalid sandbox name"),
    (["no-such-subcommand"], "No such command"),
])
def test_bad_input_is_one_error_line_and_125(args, needle):
    r = run(args, check_rc=125)
    lines = r.stderr.splitlines()
    assert lines[0].startswith("rootsand: error: ") and needle in lines[0], r.stderr
    assert all(line.startswith("rootsand: ") for line in lines)
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_options_after_the_command_belong_to_the_command():
    r = run(["run", "--", "echo", "--hostname", "x"], check_rc=0)
    assert r.stdout.strip() == "--hostname x"
    r = run(["run", "printf", "%s,", "-e", "A=1"], check_rc=0)
    assert r.stdout == "-e,A=1,"


def test_doctor_reports_every_check():
    import json

    r = run(["doctor"], check_rc=0)
    names = [line.split()[1] for line in r.stdout.splitlines() if line.split()[0] in ("ok", "degraded", "missing")]
    for name in ("user", "/etc/subuid", "/etc/subgid", "newuidmap", "newgidmap", "slirp4netns", "/dev/net/tun",
                 "kernel", "fuse-overlayfs", "/dev/fuse", "cgroup", "seccomp"):
        assert name in names, r.stdout
    data = json.loads(run(["doctor", "--json"], check_rc=0).stdout)
    by_name = {c["name"]: c for c in data}
    assert by_name["user namespaces"]["status"] == "ok"
    cgroup = by_name["cgroup v2"]
    assert cgroup["status"] == "ok" or (cgroup["status"] == "degraded" and cgroup["fix"])


def test_doctor_says_what_is_missing(tmp_path):
    import os

    env = dict(os.environ, ROOTSAND_HELPER_PATH=str(tmp_path))  # no helper can be found
    r = run(["doctor"], env=env, check_rc=1)
    assert "missing   slirp4netns" in r.stdout and "degraded  newuidmap" in r.stdout
    assert "install the 'slirp4netns' package" in r.stdout


def test_json_status_to_a_pipe(tmp_path):
    import json
    import subprocess

    from conftest import rootsand_argv

    done = subprocess.run(rootsand_argv() + ["run", "--json-status", "/dev/stdout", "--", "true"], cwd=tmp_path,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0 and "child-pid" in lines[0] and lines[-1] == {"exit-code": 0}


def test_the_default_command_is_the_users_shell_else_sh(tmp_path):
    """rootsand run alone starts $SHELL where the sandbox has it (dash has no line editing), else /bin/sh."""
    import shutil

    bash = shutil.which("bash")
    env = {**os.environ, "SHELL": bash}
    r = subprocess.run(rootsand_argv() + ["run"], input="echo $BASH_VERSION; echo ok\n", capture_output=True,
                       text=True, cwd=tmp_path, env=env)
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "ok" and r.stdout.splitlines()[0], r
    dry = json.loads(subprocess.run(rootsand_argv() + ["run", "--dry-run"], capture_output=True, text=True,
                                    cwd=tmp_path, env=env, check=True).stdout)
    assert (dry["argv"], dry["argv_fallback"]) == ([bash], ["/bin/sh"])
    # Not in the sandbox: /bin/sh, without a word (the user asked for no command in particular)
    r = subprocess.run(rootsand_argv() + ["run"], input="echo ${BASH_VERSION:-none}\n", capture_output=True,
                       text=True, cwd=tmp_path, env={**env, "SHELL": "/opt/nowhere/zsh"})
    assert (r.returncode, r.stdout, r.stderr) == (0, "none\n", "")
    # A command given by name is never replaced
    r = subprocess.run(rootsand_argv() + ["run", "--", "/opt/nowhere/zsh"], capture_output=True, text=True,
                       cwd=tmp_path, env=env)
    assert r.returncode == 127 and r.stderr.startswith("rootsand: error: /opt/nowhere/zsh: command not found")
