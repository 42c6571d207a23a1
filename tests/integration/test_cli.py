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
    (["run", "-e", "NO EQUALS", "--", "true"], "KEY=VALUE"),
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


def test_podmans_run_options_override_the_profile(tmp_path):
    """What podman users reach for: each overrides the profile, shows in --dry-run, and works."""
    (tmp_path / "vars.env").write_text("# comment\n\nFROM_FILE=1\nPASSED\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("volume\n")
    env = {**os.environ, "PASSED": "from-host", "PASSED_TOO": "also", "NOT_ASKED": "x"}
    opts = ["--env-file", "vars.env", "-e", "PASSED_*", "--memory", "300M", "--pids-limit", "64", "--cpus", "0.5",
            "--cap-drop", "all", "--cap-add", "net_raw", "--device", "/dev/null:/dev/extra-null",
            "--volume", "./data:/data:ro", "--volume", f"{tmp_path}:/rw"]
    dry = json.loads(subprocess.run(rootsand_argv() + ["run", "--dry-run", *opts, "--", "true"], cwd=tmp_path,
                                    env=env, capture_output=True, text=True, check=True).stdout)
    assert {k: dry["env"].get(k) for k in ("FROM_FILE", "PASSED", "PASSED_TOO", "NOT_ASKED")} == {
        "FROM_FILE": "1", "PASSED": "from-host", "PASSED_TOO": "also", "NOT_ASKED": None}
    assert dry["capabilities"] == ["CAP_NET_RAW"] and dry["memory"] == 300 << 20
    limits = {**dry["limits"]["rlimits"], **dry["limits"]["cgroup"]}  # as this host can enforce them
    assert limits.get("nproc", limits.get("pids.max")) in (64, "64")
    mounts = {m["dst"]: m for m in dry["resolved"]["mounts"]}
    assert mounts["/dev/extra-null"]["type"] == "dev-bind" and mounts["/data"]["type"] == "ro-bind"
    script = ("cat /data/in.txt; touch /data/x 2>/dev/null || echo read-only; touch /rw/made && echo rw; "
              "echo hi > /dev/extra-null && echo device; grep CapEff /proc/self/status; echo $FROM_FILE $PASSED")
    r = subprocess.run(rootsand_argv() + ["run", *opts, "--", "sh", "-c", script], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["volume", "read-only", "rw", "device", "CapEff:\t0000000000002000",
                                     "1 from-host"]
    assert (tmp_path / "made").exists()


@pytest.mark.parametrize("option,message", [
    (["--device", "/etc/hostname"], "--device /etc/hostname: /etc/hostname is not a character device"),
    (["--cap-add", "CAP_BOGUS"], "invalid --cap-add 'CAP_BOGUS': unknown capability 'CAP_BOGUS'"),
    (["--volume", "data:/data"], "invalid --volume 'data:/data': data would be a podman named volume"),
    (["--memory", "0"], "invalid --memory '0': must be more than 0"),
    (["--cpus", "lots"], "invalid number of cores 'lots'"),
    (["--seccomp", "missing.json"], "--seccomp "),
    (["--env-file", "missing.env"], "--env-file "),
])
def test_podmans_run_options_refuse_what_they_cannot_mean(tmp_path, option, message):
    r = run(["run", *option, "--", "true"], cwd=tmp_path, check_rc=125)
    assert r.stderr.startswith(f"rootsand: error: {message}") and r.stdout == "", r.stderr
