"""What the spec stage reads of the user's files (config/hostfiles.py): here, the git directories the build
profile shows read-only (sandbox.git), found as git finds them, and only where the repository names them."""

from rootsand.config.hostfiles import git_dirs


def _repo(path):
    (path / ".git" / "refs").mkdir(parents=True)
    (path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (path / "src" / "deep").mkdir(parents=True)
    return path


def test_the_git_directory_above_the_current_one_is_shown_and_one_inside_is_bound_already(tmp_path):
    repo = _repo(tmp_path / "repo")
    assert git_dirs(str(repo / "src" / "deep"), ()) == (str(repo), [f"{repo}/.git"], None)
    assert git_dirs(str(repo), ()) == (str(repo), [], None)  # the current directory shows it (protected)
    assert git_dirs(str(repo / ".git" / "refs"), ()) == (str(repo), [], None)  # in it: bound writable already
    assert git_dirs(str(tmp_path), ()) == (None, [], None)


def test_a_home_kept_in_git_is_not_shown(tmp_path):
    home = _repo(tmp_path / "home")
    worktree, found, note = git_dirs(str(home / "src"), (str(home),))
    assert (worktree, found) == (str(home), [])
    assert note == f"the git repository at {home} holds your home directory: its .git is not shown"


def test_a_linked_worktree_shows_the_common_directory(tmp_path):
    repo = _repo(tmp_path / "repo")
    (repo / ".git" / "worktrees" / "wt").mkdir(parents=True)
    wt = tmp_path / "wt"
    (wt / "src").mkdir(parents=True)
    (wt / ".git").write_text(f"gitdir: {repo}/.git/worktrees/wt\n")
    (repo / ".git" / "worktrees" / "wt" / "commondir").write_text("../..\n")
    (repo / ".git" / "worktrees" / "wt" / "gitdir").write_text(f"{wt}/.git\n")
    assert git_dirs(str(wt / "src"), ()) == (str(wt), [f"{wt}/.git", f"{repo}/.git"], None)
    assert git_dirs(str(wt), ()) == (str(wt), [f"{repo}/.git"], None)
    # a worktree's git directory that is not where its common directory keeps worktrees: not followed
    (repo / ".git" / "worktrees" / "wt" / "commondir").write_text("/\n")
    assert git_dirs(str(wt), ())[1] == []


def test_a_submodule_shows_its_git_directory(tmp_path):
    sup = _repo(tmp_path / "super")
    (sup / ".git" / "modules" / "sm").mkdir(parents=True)
    (sup / ".git" / "modules" / "sm" / "config").write_text("[core]\n\tworktree = ../../../sm\n")
    (sup / "sm" / "src").mkdir(parents=True)
    (sup / "sm" / ".git").write_text("gitdir: ../.git/modules/sm\n")
    assert git_dirs(str(sup / "sm" / "src"), ()) == (
        str(sup / "sm"), [f"{sup}/sm/.git", f"{sup}/.git/modules/sm"], None)


def test_a_git_file_whose_directory_does_not_name_it_back_is_not_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "gitdir").write_text(f"{tmp_path}/planted/.git\n")  # names it back, but no commondir: no worktree
    (tmp_path / "planted" / "src").mkdir(parents=True)
    (tmp_path / "planted" / ".git").write_text(f"gitdir: {secret}\n")
    worktree, found, note = git_dirs(str(tmp_path / "planted" / "src"), ())
    assert (worktree, found) == (str(tmp_path / "planted"), [])
    assert note.startswith(f"{tmp_path}/planted/.git names {secret}, which does not name this work tree back")
    # nor does a submodule's whose core.worktree is elsewhere
    (secret / "config").write_text("[core]\n\tworktree = /\n")
    assert git_dirs(str(tmp_path / "planted" / "src"), ())[1] == []
