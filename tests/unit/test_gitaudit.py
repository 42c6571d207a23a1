"""The check after a run: git repositories and their dangerous files made or changed since a moment."""

import os
import time

from rootsand import gitaudit


def make(path, text=""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_only_what_was_made_after_the_start_is_moved_aside(tmp_path):
    make(tmp_path / ".git" / "config", "[core]\n")
    make(tmp_path / ".git" / "hooks" / "pre-commit.sample")
    make(tmp_path / "old" / ".git" / "config")
    make(tmp_path / ".git" / "modules" / "lib" / "config")
    since = time.time() + 0.05
    time.sleep(0.1)  # file times are the kernel's coarse clock: clearly after `since`
    make(tmp_path / "src" / ".git" / "config")  # a planted repository
    make(tmp_path / ".git" / "commondir", "../evil\n")
    make(tmp_path / ".git" / "hooks" / "post-checkout")
    make(tmp_path / ".git" / "modules" / "lib" / "config", "[core]\n\tfsmonitor = x\n")
    make(tmp_path / "deep" / "a" / "b" / "c" / ".git", "gitdir: /elsewhere\n")
    make(tmp_path / ".git" / "objects" / "ab" / "cdef")  # ordinary git work: not looked at
    warnings = gitaudit.audit([str(tmp_path)], since)
    moved = sorted(w.split(" was made")[0].removeprefix(str(tmp_path)) for w in warnings)
    assert moved == ["/.git/commondir", "/.git/hooks/post-checkout", "/.git/modules/lib/config",
                     "/deep/a/b/c/.git", "/src/.git"]
    assert os.path.exists(tmp_path / "src" / ".git.rootsand-quarantine" / "config")
    assert os.path.exists(tmp_path / ".git" / "commondir.rootsand-quarantine")
    assert os.path.exists(tmp_path / "old" / ".git" / "config") and os.path.exists(tmp_path / ".git" / "config")
    assert gitaudit.audit([str(tmp_path)], since) == []  # what is moved aside stays aside


def test_skipped_paths_and_links_are_left_alone(tmp_path):
    since = time.time()
    time.sleep(0.05)
    make(tmp_path / "mine" / ".git")
    os.symlink("/", tmp_path / "root")  # not followed
    assert gitaudit.audit([str(tmp_path)], since, {str(tmp_path / "mine" / ".git")}) == []
