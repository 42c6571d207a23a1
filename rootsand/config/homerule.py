"""The home rule: nothing a sandbox writes in your home directory runs on the host later.

Programs on the host take instructions from far more places in a home directory than any list can name:
shell start-up files and what they source (`~/.bash_aliases`), `~/.config/*` of every tool (rootsand's own
profiles among them), `.pth` files in `~/.local/lib/python3.*/site-packages` or in a virtual environment
anywhere in the home, local::lib's `~/perl5`, systemd's and direnv's directories, the directories on PATH.
So the rule is by place, not by name:

- a writable bind that shows a home directory itself (run from $HOME, `--bind ~`) shows it read-only, with
  every mount below it: a directory in it is writable only when it is the current directory or bound
  itself (`cd ~/src/proj`), or named as an exception;
- a writable bind whose source lies inside a dot-entry of a home (`cd ~/.config/nvim`) is read-only;
- the directories of the user's PATH inside a home (and $XDG_CONFIG_HOME, $XDG_DATA_HOME, $XDG_STATE_HOME
  where set there) are read-only wherever a writable bind shows them;
- exceptions, writable after all: `[security] home_writable` (`~/.cache/pip` in the build profile) and
  `--unprotect ~/PATH`;
- rootsand's own configuration and state (`own_dirs`) are never writable, whatever the exceptions.

Planned here, purely, from the spec; PID 1 carries the guards out (runtime/fs/protect.py).
"""

import os

from rootsand.config.model import Record
from rootsand.errors import RootsandError
from rootsand.guard.hostpaths import is_below


class HomeGuard(Record):
    """A home directory shown by a writable bind: read-only, the `writable` exceptions (relative to the
    home) bound writable over it."""

    FIELDS = {
        "mount": 0,  # index of the bind in Plan.mounts
        "home": "",  # the home directory on the host
        "dst": "",  # where it is inside
        "writable": list,  # relative paths under the home that stay writable (home_writable)
        "origin": "",
    }
    __slots__ = tuple(FIELDS)


def read_only_reason(src: str, spec) -> tuple[str, bool] | None:
    """Why a writable bind of `src` must be read-only, and whether an exception may lift that; or None."""
    for own in spec.own_dirs:
        if _is_own(src, own):
            return f"is rootsand's own configuration or state ({own})", False
    if any(is_below(src, w) for w in _exceptions(spec)):
        return None
    for home in spec.homes:
        if src != home and is_below(src, home):
            first = src[len(home) + 1:].split("/")[0]
            if first.startswith("."):
                return f"is inside {home}/{first}, where programs on your host find what to run", True
    for d in _path_dirs(spec):
        if is_below(src, d):
            return f"is {'' if src == d else 'inside '}{d}, on your PATH or an XDG home: programs on your host run what is there", True
    for target, link in spec.dot_links.items():
        if is_below(src, target):
            return f"is {'' if src == target else 'inside '}{target}, where {link} leads", True
    return None


def plan_home(spec, mounts: list) -> tuple[list, list[HomeGuard], list[dict], list[str]]:
    """The home rule applied to `mounts` (the spec's, in order): the mounts with binds made read-only where
    the rule says so, the guards, protected paths to add (dicts of plan.Protected's fields) and the notes."""
    out, notes = [], []
    for m in mounts:
        if m.type in ("bind", "dev-bind") and m.src:
            src = os.path.normpath(m.src)
            # also where a link on the way leads (a home reached through /home -> /data/home, root's link)
            why = read_only_reason(src, spec) or read_only_reason(spec.real_sources.get(src, src), spec)
            if why:
                m = m.replace(type="ro-bind")
                what = "the current directory" if src == spec.cwd else f"{m.origin or m.dst}:"
                notes.append(f"{what} {src} {why[0]}: it is read-only in the sandbox"
                             + (f" (--unprotect ~/{os.path.relpath(m.src, _home_of(m.src, spec))} makes it "
                                "writable)" if why[1] and _home_of(m.src, spec) else ""))
        elif m.type == "overlay" and m.upper not in ("tmpfs", None):
            upper = os.path.normpath(m.upper)
            why = read_only_reason(upper, spec) or read_only_reason(spec.real_sources.get(upper, upper), spec)
            if why:
                raise RootsandError(f"{m.origin or m.dst}: the overlay's upper directory {m.upper} {why[0]}: a sandbox "
                                    "must not write there", hint="choose an upper directory elsewhere, or upper = \"tmpfs\"")
        out.append(m)
    guards, protected = [], []
    for index, m in enumerate(out):
        if m.type not in ("bind", "dev-bind") or not m.src:
            continue
        if any(is_below(m.dst, later.dst) for later in out[index + 1:] if later.type != "symlink"):
            continue  # a later mount hides it
        src = os.path.normpath(m.src)
        guarded = []
        for home in spec.homes:
            if is_below(home, src):
                guarded.append(home)
                dst = os.path.normpath(os.path.join(m.dst, os.path.relpath(home, src)))
                writable = [w[2:] for w in spec.home_writable
                            if not any(is_below(os.path.join(home, w[2:]), own) for own in spec.own_dirs)]
                guards.append(HomeGuard(mount=index, home=home, dst=dst, writable=writable, origin=m.origin))
                what = "running from your home directory" if src == spec.cwd and src == home else \
                    f"{m.origin or m.dst}: your home directory {home} is shown"
                notes.append(f"{what}: it is read-only in the sandbox, so nothing there can be made or changed "
                             "for your host to run later; run from a project directory in it, or --unprotect "
                             "~/DIR to make one writable"
                             + (f" (writable: {', '.join('~/' + w for w in writable)})" if writable else ""))
        for d, own in [(d, False) for d in _path_dirs(spec) + list(spec.dot_links)] + [(d, True) for d in spec.own_dirs]:
            if d == src or not is_below(d, src):
                continue
            excepted = any(is_below(d, w) for w in _exceptions(spec))
            if (_in_dot_entry(d, spec) or any(is_below(d, home) for home in guarded)) and not excepted:
                continue  # read-only already, by the guard or the bind's own rule
            if excepted and not own:
                continue  # made writable by the user
            rel = os.path.relpath(d, src)
            protected.append({"mount": index, "path": rel, "dst": os.path.join(m.dst, rel), "directory": True,
                              "entry": f"{d} ({'rootsand' if own else spec.dot_links.get(d, 'on your PATH')})",
                              "placeholder": own or spec.placeholders, "own": own})
    return out, guards, protected, notes


def _is_own(path: str, own: str) -> bool:
    """`path` is in the rootsand directory `own`; /tmp/rootsand-UID stands for its fallbacks too
    (/tmp/rootsand-UID-NAME, registry.runtime_dir)."""
    return is_below(path, own) or (own.startswith("/tmp/rootsand-") and path.startswith(own + "-"))


def _exceptions(spec) -> list[str]:
    return [os.path.join(home, w[2:]) for home in spec.homes for w in spec.home_writable]


def _home_of(path: str, spec) -> str | None:
    return next((home for home in spec.homes if path != home and is_below(path, home)), None)


def _in_dot_entry(path: str, spec) -> bool:
    home = _home_of(path, spec)
    return bool(home) and path[len(home) + 1:].startswith(".")


def _path_dirs(spec) -> list[str]:
    """The PATH directories inside a home (not the home itself), what the user's shells run from, and the
    XDG configuration, data and state homes when set to a place in a home that is no dot-entry: where
    programs find what to run (autostart entries, systemd units, shell snippets)."""
    return [d for d in (*spec.host_path, *spec.xdg_dirs) if _home_of(d, spec)]
