"""security.hide in the agent profile: secrets in the project read as empty, and a program inside can neither
replace them, nor reach them by another name (a hard link, a symbolic link, a renamed directory above them),
while the host's files stay as they were."""

import os
import re

import pytest

from conftest import command_stderr, sandbox

SECRETS = {".env": "API_TOKEN=s3cret\n", "certs/server.pem": "-----BEGIN PRIVATE KEY-----\n",
           ".npmrc": "//registry.npmjs.org/:_authToken=npm_s3cret\n", "app/deep/er/.env.local": "DB=pw\n"}
PLAIN = {"README.md": "hello\n", ".env.example": "API_TOKEN=\n", "src/main.js": "console.log(1)\n"}


@pytest.fixture
def project(tmp_path):
    top = tmp_path / "project"
    for name, text in {**SECRETS, **PLAIN}.items():
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(text)
    return top


def read_all(names) -> str:
    return f"for f in {' '.join(names)}; do printf '%s=[%s]\\n' \"$f\" \"$(cat $f)\"; done"


def host_files(top) -> dict:
    return {str(p.relative_to(top)): p.read_text() for p in sorted(top.rglob("*")) if p.is_file()}


def test_secrets_read_as_empty_and_the_rest_as_it_is(project):
    r = sandbox("sh", "-c", read_all(list(SECRETS) + list(PLAIN)), opts=["--profile", "agent", "-v"], cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{name}=[]" for name in SECRETS] + [
        f"{name}=[{text.strip()}]" for name, text in PLAIN.items()]
    hidden = sorted(line for line in r.stderr.splitlines() if line.startswith("rootsand: hidden: "))
    assert hidden == sorted(f"rootsand: hidden: {project / name} (reads as empty: security.hide)" for name in SECRETS)
    # what it cost: every file and directory below the project once, the protected paths' placeholders too
    placeholders = [".git", ".gitmodules", ".envrc", ".vscode", ".idea"]
    walked = len(SECRETS) + len(PLAIN) + len({"certs", "app", "app/deep", "app/deep/er", "src"}) + len(placeholders)
    assert re.search(rf"^rootsand: security.hide: {walked} entries looked through in \d+\.\d{{3}}s, 4 files hidden$",
                     r.stderr, re.M), r.stderr
    assert host_files(project) == {**SECRETS, **PLAIN}


def test_a_hidden_file_cannot_be_written_removed_renamed_replaced_or_linked_over(project):
    attempts = ["echo x > .env", "rm -f .env", "mv .env moved", "mv README.md .env", "ln -f README.md .env",
                "ln .env copy", "chmod 600 .env", "touch .env", "mv certs certs2 && cat certs2/server.pem && mv certs2 certs",
                "rm -rf certs", "mv app /tmp/app"]
    script = "; ".join(f"if {a} 2>/dev/null; then echo 'done: {a}'; fi" for a in attempts)
    r = sandbox("sh", "-c", script + "; cat .env certs/server.pem; ls certs", opts=["--profile", "agent"], cwd=project)
    assert r.returncode == 0, r.stderr
    # renaming a directory above a hidden file is allowed: the file stays hidden below its new name
    assert r.stdout.splitlines() == ["done: mv certs certs2 && cat certs2/server.pem && mv certs2 certs", "server.pem"]
    assert host_files(project) == {**SECRETS, **PLAIN}
    assert os.stat(project / ".env").st_mode & 0o777 == 0o644


def test_other_names_of_a_secret_are_hidden_too(project, tmp_path):
    os.link(project / ".env", project / "src" / "config.txt")  # another name, no pattern matches it
    (project / "notes.txt").symlink_to("certs/server.pem")
    (project / "secrets-elsewhere").symlink_to("app")  # a link to a directory: not walked twice, not needed
    outside = tmp_path / "outside"
    (outside / "tree").mkdir(parents=True)
    (outside / "tree" / ".env").write_text("OUTSIDE=1\n")
    (outside / "key.txt").write_text("KEY=1\n")
    (project / "outlink").symlink_to(outside / "tree")  # leads out of the writable directory: not walked
    (project / "token.pem").symlink_to(outside / "key.txt")  # a link that matches: what it leads to is hidden
    r = sandbox("sh", "-c", read_all(["src/config.txt", "notes.txt", "secrets-elsewhere/deep/er/.env.local",
                                      "token.pem", f"{outside}/key.txt", "outlink/.env"]),
                opts=["--profile", "agent", "-v", "--ro-bind", str(outside)], cwd=project)
    assert r.returncode == 0, r.stderr
    # a read-only directory of yours (here reached by a link) is not looked through: only what you let write
    assert r.stdout.splitlines() == ["src/config.txt=[]", "notes.txt=[]", "secrets-elsewhere/deep/er/.env.local=[]",
                                     "token.pem=[]", f"{outside}/key.txt=[]", "outlink/.env=[OUTSIDE=1]"]
    hidden = [line for line in r.stderr.splitlines() if line.startswith("rootsand: hidden: ")]
    assert f"rootsand: hidden: {project / 'src' / 'config.txt'} (reads as empty: security.hide)" in hidden
    assert [line for line in hidden if str(outside) in line] == [
        f"rootsand: hidden: {outside / 'key.txt'} (reads as empty: security.hide)"]
    assert (outside / "key.txt").read_text() == "KEY=1\n"


def test_a_link_to_a_secret_outside_that_the_sandbox_shows_is_hidden_where_it_leads(project, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "prod.secret").write_text("PROD=1\n")
    (project / ".env").unlink()
    (project / ".env").symlink_to(shared / "prod.secret")
    r = sandbox("sh", "-c", f"cat .env; cat {shared}/prod.secret; echo end",
                opts=["--profile", "agent", "--ro-bind", str(shared)], cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "end\n"
    assert (shared / "prod.secret").read_text() == "PROD=1\n"


def test_unhide_shows_a_file_a_tree_or_lifts_a_pattern(project):
    names = list(SECRETS)
    r = sandbox("sh", "-c", read_all(names), opts=["--profile", "agent", "--unhide", ".env", "--unhide", "app",
                                                   "--unhide", "**/*.pem"], cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        f"{name}=[{'' if name == '.npmrc' else SECRETS[name].strip()}]" for name in names]


@pytest.mark.parametrize("args, message", [
    (["--unhide", "/etc/passwd"], "rootsand: error: --unhide /etc/passwd: not in a directory the sandbox can write, "
                                  "where security.hide applies"),
])
def test_an_unhide_that_shows_nothing_is_one_error_line(project, args, message):
    r = sandbox("true", opts=["--profile", "agent", *args], cwd=project)
    assert r.returncode == 125 and r.stderr.splitlines()[0] == message, r.stderr


def test_what_the_command_makes_is_not_hidden(project):
    """A pattern cannot cover a file that is not there when the sandbox starts."""
    r = sandbox("sh", "-c", "echo made > new.pem; cat new.pem", opts=["--profile", "agent"], cwd=project)
    assert (r.returncode, r.stdout) == (0, "made\n"), r.stderr
    assert (project / "new.pem").read_text() == "made\n"


def test_a_second_writable_bind_is_covered_too(project, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "id_ed25519").write_text("KEY\n")
    r = sandbox("cat", str(data / "id_ed25519"), opts=["--profile", "agent", "--bind", str(data)], cwd=project)
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    assert command_stderr(r) == []


def test_a_profile_of_ones_own_hides_what_it_lists(project, tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "default"\n[security]\nhide = ["README.md", "src/**/*.js"]\n')
    r = sandbox("sh", "-c", read_all(["README.md", "src/main.js", ".env"]), opts=["--profile", str(mine)],
                cwd=project)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["README.md=[]", "src/main.js=[]", f".env=[{SECRETS['.env'].strip()}]"]


def test_a_wide_tree_is_walked_with_few_open_files(project):
    """As many fds open as the tree is deep: 1,500 packages side by side (a node_modules) stay below the
    1024 open files a process may have."""
    modules = project / "node_modules"
    for i in range(1500):
        (modules / f"pkg{i}" / "lib").mkdir(parents=True)
    (modules / "pkg0" / "lib" / "test.pem").write_text("KEY\n")
    (modules / "pkg1499" / ".npmrc").write_text("TOKEN\n")
    r = sandbox("sh", "-c", "ulimit -n; cat node_modules/pkg0/lib/test.pem node_modules/pkg1499/.npmrc; echo end",
                opts=["--profile", "agent"], cwd=project)
    assert (r.returncode, r.stdout) == (0, "1024\nend\n"), r.stderr


def test_a_link_into_the_sandboxs_own_files_hides_nothing_there(project):
    """/proc, /dev and the tmpfs mounts hold no file of the host's: a matching link into them is left alone."""
    (project / ".env").unlink()
    (project / ".env").symlink_to("/proc/version")
    r = sandbox("sh", "-c", "cat .env", opts=["--profile", "agent", "-v"], cwd=project)
    assert r.returncode == 0 and r.stdout.startswith("Linux version"), r.stderr
    assert "rootsand: hidden: /proc" not in r.stderr


def test_a_tree_too_deep_to_walk_is_refused_with_one_error_line(project):
    deep = project / "/".join(["d"] * 300)
    deep.mkdir(parents=True)
    r = sandbox("true", opts=["--profile", "agent"], cwd=project)
    at = project / "/".join(["d"] * 256)
    assert r.returncode == 125 and r.stderr.splitlines() == [
        f"rootsand: error: security.hide: {at} is more than 256 directories deep: the sandbox is not started with what "
        "is below unhidden", f"rootsand: hint: --unhide {at} leaves it out"], r.stderr
    assert sandbox("true", opts=["--profile", "agent", "--unhide", "d"], cwd=project).returncode == 0


def test_a_profile_extending_untrusted_hides_in_its_overlay_too(project, tmp_path):
    mine = tmp_path / "mine.toml"
    mine.write_text('extends = "untrusted"\n[security]\nhide = ["**/.env"]\n')
    r = sandbox("sh", "-c", "cat .env; echo x > .env; rm .env; echo end", opts=["--profile", str(mine)], cwd=project)
    assert r.returncode == 0 and r.stdout == "end\n", r.stderr
    assert (project / ".env").read_text() == SECRETS[".env"]


def test_a_second_sandbox_renaming_a_secrets_directory_never_uncovers_it(project):
    """A running agent sandbox may rename the directory that holds a hidden file (the file goes along, still
    hidden); a sandbox starting meanwhile must not skip that tree when the name it listed is gone: it walks
    again, or refuses to start (attack 9, h01)."""
    import subprocess
    import uuid

    from conftest import rootsand_argv, run

    name = f"renamer-{uuid.uuid4().hex[:8]}"
    run(["run", "-d", "--name", name, "--profile", "agent", "--", "sh", "-c",
         "while :; do mv app app_; mv app_ app; done"], cwd=project, check_rc=0)
    try:
        for _ in range(15):
            done = subprocess.run(rootsand_argv() + ["run", "--profile", "agent", "--", "sh", "-c",
                                                     "cat app/deep/er/.env.local app_/deep/er/.env.local 2>/dev/null"],
                                  cwd=project, capture_output=True, text=True, timeout=60)
            assert "DB=pw" not in done.stdout
            assert done.returncode in (0, 1) or (done.returncode == 125 and "changed while it was looked through"
                                                 in done.stderr), done.stderr
    finally:
        run(["rm", "-f", name], timeout=60)
