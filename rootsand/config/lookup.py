"""Where profiles are found: a `--profile` value or an `extends` to a file, the user's profiles in
~/.config/rootsand/profiles, the built-in ones beside the package."""

import os
import re

from rootsand.config import tomlfile
from rootsand.errors import RootsandError

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

def _user_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not base.startswith("/"):  # the XDG spec: a relative value is invalid and ignored
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "rootsand", "profiles")


def builtin_dir() -> str:
    """Where the wheel puts profiles/: in the rootsand package, beside config/. importlib.resources finds them
    elsewhere (an editable install maps the package to the repository's profiles/), but costs ~15 ms to import."""
    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "profiles")
    if os.path.isfile(os.path.join(beside, "default.toml")):
        return beside
    import importlib.resources

    return str(importlib.resources.files("rootsand.profiles"))


def _names_in(directory: str) -> list[str]:
    try:
        entries = os.listdir(directory)
    except OSError:
        return []
    return sorted(e[:-5] for e in entries
                  if e.endswith(".toml") and NAME_RE.fullmatch(e[:-5]) and os.path.isfile(os.path.join(directory, e)))


def _known_names() -> list[str]:
    return sorted(set(_names_in(_user_dir())) | set(_names_in(builtin_dir())))


def resolve(value: str, base_dir: str, skip: str | None = None, sibling_files: bool = True) -> str:
    """The file for a profile name or path. `skip` is the extending file: another file of the same name is
    preferred to it, so a user's `default.toml` can extend "default" and get the built-in one.
    `sibling_files`: a bare NAME.toml may be a file in `base_dir` (in `extends`, beside the extending file)."""
    if "\0" in value:
        raise RootsandError(f"invalid profile name {value!r}")
    # On the command line only a value with a "/" is a file: a bare `build.toml` is the profile named build,
    # never a file in the current directory. Sandboxes can write there, and one must not choose the next
    # one's profile (like "." left out of PATH); `./build.toml` says it.
    if "/" in value or (sibling_files and value.endswith(".toml") and os.path.isfile(os.path.join(base_dir, value))):
        path = os.path.abspath(os.path.join(base_dir, value))
        if not os.path.exists(path):
            raise RootsandError(f"no profile file {path}")
        return path
    name = value[:-5] if value.endswith(".toml") else value
    if not NAME_RE.fullmatch(name):
        raise RootsandError(f"invalid profile name {value!r}: letters, digits, '_', '.' and '-'",
                            "or give a path to a TOML file (a value with a '/')")
    builtins = builtin_dir()
    # A built-in's `extends` means a built-in: a user's default.toml may be chosen by name, but must not
    # change what agent, untrusted, build or fakeroot inherit.
    places = (builtins,) if skip and os.path.dirname(os.path.realpath(skip)) == os.path.realpath(builtins) else (
        _user_dir(), builtins)
    found = [path for path in (os.path.join(d, name + ".toml") for d in places) if os.path.isfile(path)]
    others = [path for path in found if not (skip and os.path.realpath(path) == os.path.realpath(skip))]
    if others or found:
        return (others or found)[0]  # only the extending file itself: the caller reports the cycle
    if value.endswith(".toml") and os.path.isfile(os.path.join(base_dir, value)):
        # A file by that name is here, but a bare name is never read from the current directory (above)
        raise RootsandError(f"no profile named {name!r}", f"for the file {os.path.join(base_dir, value)}, "
                            f"write ./{value}; known profiles: {', '.join(_known_names())}")
    raise RootsandError(f"no profile named {name!r}",
                        f"known profiles: {', '.join(_known_names())}; or give a path to a TOML file")


def resolve_path(name_or_path: str) -> str:
    """The profile file for a `--profile` value (see CONTRACT.md, "Profiles")."""
    try:
        cwd = os.getcwd()
    except OSError as e:
        raise RootsandError(f"cannot read the current directory: {e.strerror}",
                            "cd to a directory that exists") from None
    return resolve(name_or_path, cwd, sibling_files=False)


def list_profiles() -> list[tuple[str, str, str]]:
    """(name, description, origin) for every profile; a user profile shadows a built-in of the same name."""
    found = {name: os.path.join(builtin_dir(), name + ".toml") for name in _names_in(builtin_dir())}
    user = {name: os.path.join(_user_dir(), name + ".toml") for name in _names_in(_user_dir())}
    found.update(user)
    out = []
    for name in sorted(found):
        path = found[name]
        try:
            # Only the file's own description: listing must not fail on one broken or slow profile.
            description = tomlfile.read(path, "profile")[1].get("description", "")
            if not isinstance(description, str):
                description = ""
        except RootsandError as e:
            description = f"(broken: {e.message})"
        out.append((name, description, path if name in user else "built-in"))
    return out
