"""What the spec stage learns from the user's files: the git hook directories in the writable directories
(core.hooksPath), the git directories of the work tree the current directory is in, where the links among a home's dot-entries lead, rootsand's own directories, real paths,
a seccomp rule file. Read here, through one HostFiles, so that spec.from_profile() itself opens no file and
makes no system call (tests/unit/test_plan.py passes a stand-in and takes the system away)."""

import os
import stat
import sys

from rootsand.errors import RootsandError
from rootsand.guard.hostpaths import is_below, real_path


class HostFiles:
    """The host's files as the spec stage asks about them."""

    def realpath(self, path: str) -> str:
        return real_path(path)

    def hook_dirs(self, writable: list[str], homes: tuple[str, ...], env: dict[str, str]) -> list[str]:
        return hook_dirs(writable, homes, env)

    def dot_links(self, homes: tuple[str, ...]) -> dict:
        return dot_links(homes)

    def git_dirs(self, directory: str, homes: tuple[str, ...]) -> tuple[str | None, list[str], str | None]:
        return git_dirs(directory, homes)

    def own_dirs(self, env: dict[str, str], homes: tuple[str, ...]) -> tuple[str, ...]:
        return own_dirs(env, homes)

    def env_file(self, path: str) -> list[str]:
        """podman's --env-file: its entries, one a line; blank lines and lines starting with # left out."""
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RootsandError(f"--env-file {path}: {getattr(e, 'strerror', None) or e}") from None
        return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]

    def seccomp_file(self, path: str) -> str:
        """--seccomp FILE: its path, once it is a file."""
        if not os.path.isfile(path):
            raise RootsandError(f"--seccomp {path}: no such rule file", hint="--seccomp takes default, none or a file")
        return os.path.normpath(path)

    def rule_file(self, path: str) -> list:
        from rootsand.security.seccomp.rulefile import load_rule_file

        return load_rule_file(path)


def hook_dirs(writable: list[str], homes: tuple[str, ...], env: dict[str, str]) -> list[str]:
    """Protected-path entries for the hook directories git would use in the writable directories: core.hooksPath
    of a repository there, or of the user's global configuration, when it leads into one of them (husky's
    `.husky/_`); git runs those hooks as it runs .git/hooks. Includes are not followed."""
    home = homes[0] if homes else "/nonexistent"
    config_home = env["XDG_CONFIG_HOME"] if env.get("XDG_CONFIG_HOME", "").startswith("/") else os.path.join(home, ".config")
    global_value = next((v for v in (_hooks_path(os.path.join(home, ".gitconfig")),
                                     _hooks_path(os.path.join(config_home, "git", "config"))) if v), None)
    entries = []
    for top in writable:
        worktree, git_dir = _enclosing_repository(top)
        value = None
        if git_dir:  # the repository's own, config.worktree last (it wins)
            for name in ("config", "config.worktree"):
                value = _hooks_path(os.path.join(git_dir, name)) or value
        value = value or global_value
        if not value:
            continue
        # a relative hooksPath is taken from the top of the working tree, wherever in it git runs
        path = os.path.normpath(os.path.join(worktree or top, os.path.expanduser(value) if value.startswith("~/") else value))
        if path != top and path.startswith(top.rstrip("/") + "/"):
            entries.append(os.path.relpath(path, top) + "/")
    return list(dict.fromkeys(entries))


def _enclosing_repository(directory: str) -> tuple[str | None, str | None]:
    """The working tree and git directory of the repository `directory` is in (a `.git` directory, or a
    `.git` file naming one), looking upwards as git does; (None, None) outside any."""
    path = directory
    while True:
        git = os.path.join(path, ".git")
        try:
            st = os.lstat(git)
        except OSError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            return path, git
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size < 4096:
            line = (_small_file(git) or "").strip()  # (no link followed, should one be swapped in meanwhile)
            if line.startswith("gitdir:"):
                return path, os.path.normpath(os.path.join(path, line[7:].strip()))
        parent = os.path.dirname(path)
        if parent == path:
            return None, None
        path = parent


def git_dirs(directory: str, homes: tuple[str, ...]) -> tuple[str | None, list[str], str | None]:
    """The work tree `directory` is in, the git directories git reads there that lie outside `directory`
    (its `.git`; for a `.git` file, the git directory it names and a linked worktree's common one), to be
    bound read-only at their places, and a note when the repository is left out. A `.git` file is followed
    only when the git directory names this work tree back, as `git worktree add` and submodules leave it:
    a `.git` file anyone made (a sandbox, in a directory it could write) must not show another place."""
    worktree, git_dir = _enclosing_repository(directory)
    if worktree is None:
        return None, [], None
    if any(is_below(home, real_path(worktree)) for home in homes):  # a home kept in git: its history is the home
        return worktree, [], f"the git repository at {worktree} holds your home directory: its .git is not shown"
    dot_git = os.path.join(worktree, ".git")
    wanted = [dot_git]
    if git_dir != dot_git:
        common = _linked_worktree_common(git_dir, dot_git)
        if common is None and not _submodule_of(git_dir, worktree):
            return worktree, [], (f"{dot_git} names {git_dir}, which does not name this work tree back (as a linked "
                                  "worktree's or a submodule's does): not shown (--ro-bind it if it is yours)")
        wanted += ([common] if common else []) + [git_dir]
    here = real_path(directory)
    found: list[str] = []
    for path in wanted:
        real = real_path(path)
        if is_below(real, here) or is_below(here, real) or any(is_below(real, real_path(p)) for p in found):
            continue  # in the current directory, bound already (or it is in the git directory), or bound below
        found.append(path)
    return worktree, found, None


def _linked_worktree_common(git_dir: str, dot_git: str) -> str | None:
    """The common git directory of a linked worktree whose git directory is `git_dir` (COMMON/worktrees/NAME,
    its `gitdir` file naming `dot_git`), else None."""
    back, common = _small_file(os.path.join(git_dir, "gitdir")), _small_file(os.path.join(git_dir, "commondir"))
    if not back or not common:
        return None
    common = os.path.normpath(os.path.join(git_dir, common.strip()))
    if real_path(os.path.join(git_dir, back.strip())) != real_path(dot_git):
        return None
    if os.path.dirname(real_path(git_dir)) != os.path.join(real_path(common), "worktrees"):
        return None
    return common


def _submodule_of(git_dir: str, worktree: str) -> bool:
    """`git_dir` is a submodule's, whose core.worktree is `worktree`."""
    value = _config_value(os.path.join(git_dir, "config"), "worktree")
    return bool(value) and real_path(os.path.join(git_dir, value)) == real_path(worktree)


def _small_file(path: str) -> str | None:
    """The text of a small regular file, or None (missing, a link, not regular, too large)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 1 << 20)
        return None if len(data) == 1 << 20 else data.decode(errors="replace")
    finally:
        os.close(fd)


def _hooks_path(config: str) -> str | None:
    """core.hooksPath in a git configuration file, or None (a file that is missing, a link, or too large)."""
    return _config_value(config, "hookspath")


def _config_value(config: str, name: str) -> str | None:
    """core.NAME (lower case) in a git configuration file, or None."""
    text = _small_file(config)
    if text is None:
        return None
    section, value = None, None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line[1:line.find("]")].strip().lower() if "]" in line else None
            line = line[line.find("]") + 1:].strip() if "]" in line else ""  # `[core] hooksPath = x` is valid
        if section == "core" and "=" in line:
            key, raw = line.split("=", 1)
            if key.strip().lower() == name:
                raw = raw.strip()
                value = raw[1:raw.rfind('"')] if raw.startswith('"') else raw.split("#")[0].split(";")[0].strip()
    return value or None


def dot_links(homes: tuple[str, ...], budget: int = 2000) -> dict:
    """Where the symbolic links among a home's dot-entries lead, to what links there (a dotfiles manager's
    `~/.bashrc -> dotfiles/bashrc`): the home rule keeps those places read-only too. Three levels deep, and
    `budget` entries at most, breadth first (the top-level ones are what shells and tools read first)."""
    found = {}
    queue = [(home, name, 1) for home in homes for name in _names(home) if name.startswith(".")]
    while queue and budget > 0:
        parent, name, depth = queue.pop(0)
        budget -= 1
        path = os.path.join(parent, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            found.setdefault(real_path(path), path)
        elif stat.S_ISDIR(st.st_mode) and depth < 3:
            queue += [(path, child, depth + 1) for child in _names(path)]
    return found


def _names(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError:
        return []


def own_dirs(env: dict[str, str], homes: tuple[str, ...]) -> tuple[str, ...]:
    """rootsand's own configuration (profiles, rule files), state (the registry) and code (the package and the
    virtual environment it runs from, where they are the user's): a sandbox that could write them would choose
    the next sandbox's profile, what `exec` and the sweeps act on, or what runs as rootsand itself."""
    def xdg(name: str, default: str) -> list[str]:
        value = env.get(name, "")
        return [os.path.normpath(value)] if value.startswith("/") else [os.path.join(h, default) for h in homes]

    dirs = [os.path.join(d, "rootsand") for d in xdg("XDG_CONFIG_HOME", ".config") + xdg("XDG_STATE_HOME", ".local/state")]
    from rootsand.ops.registry import every_runtime_dir

    dirs += every_runtime_dir(env)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # rootsand/, not rootsand/config/
    for code in (package, os.path.join(os.path.dirname(package), "profiles"), sys.prefix):
        try:
            if os.stat(code).st_uid == os.getuid() and os.getuid() != 0:
                dirs.append(real_path(code))  # (root's own are out of a sandbox's reach anyway)
        except OSError:
            pass
    # and where links lead (a stow-managed ~/.config/rootsand -> ../dotfiles/rootsand)
    return tuple(dict.fromkeys(dirs + [real_path(d) for d in dirs]))
