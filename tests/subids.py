"""Subordinate id ranges for the test users, free ones, as useradd takes them (tests/run.sh calls this).

    python3 tests/subids.py USER [--none OTHER...]

gives USER two ranges of 65536 ids in /etc/subuid and /etc/subgid (the same numbers in both: the tests
expect a file's uid and gid inside to land on the same host id) that no other line of either file
overlaps, within SUB_UID_MIN..SUB_UID_MAX and SUB_GID_MIN..SUB_GID_MAX of /etc/login.defs; and OTHER none
(the ranges useradd gave it are free again).
USER's lines that overlap nobody's are kept, so that a rerun changes nothing; the others are replaced by
the lowest free ranges (useradd's rule: the first gap that fits, from the minimum up). Fixed ranges such as
100000:65536, which useradd gives the first normal user, would share ids with that user: each could then
change the other's files of a fakeroot build. Stdlib only."""

import argparse
import os
import pwd
import sys

COUNT, SIZE = 2, 65536
# shadow's defaults, where login.defs does not say
DEFAULTS = {"SUB_UID_MIN": 100000, "SUB_UID_MAX": 600100000, "SUB_GID_MIN": 100000, "SUB_GID_MAX": 600100000}


class NoRoom(Exception):
    pass


def parse(text: str) -> list[tuple[str, int, int]]:
    """The (owner, start, count) of each well-formed line; comments and anything else are left out."""
    entries = []
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit() and not line.startswith("#"):
            entries.append((fields[0], int(fields[1]), int(fields[2])))
    return entries


def limits(login_defs: str) -> tuple[int, int]:
    """The ids both files may use: from the larger of the minimums to the smaller of the maximums."""
    values = dict(DEFAULTS)
    for line in login_defs.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] in values and fields[1].isdigit():
            values[fields[0]] = int(fields[1])
    return (max(values["SUB_UID_MIN"], values["SUB_GID_MIN"]), min(values["SUB_UID_MAX"], values["SUB_GID_MAX"]))


def pick(files: list[str], owners: set[str], lo: int, hi: int, count: int = COUNT,
         size: int = SIZE) -> list[int]:
    """The starts of `count` ranges of `size` ids for the user called by any of `owners` (a name, a uid),
    free in every one of `files` (their texts) and within lo..hi: the user's own ranges that overlap no
    other line of any file first (in the order of the first file), then the lowest gaps that fit."""
    entries = [parse(text) for text in files]
    taken = sorted({(start, start + n) for each in entries for owner, start, n in each if owner not in owners})
    mine = [[start for owner, start, n in each if owner in owners and n == size] for each in entries]
    kept = []
    for start in mine[0]:
        alone = not any(a < start + size and start < b for a, b in taken)
        if alone and all(start in other for other in mine[1:]) and lo <= start and start + size - 1 <= hi \
                and start not in kept:
            kept.append(start)
    kept = kept[:count]
    used = sorted(taken + [(start, start + size) for start in kept])
    new, candidate = [], lo
    while len(kept) + len(new) < count:
        for a, b in used:
            if a < candidate + size and candidate < b:
                candidate = b  # overlaps this one: try just above it
        if any(a < candidate + size and candidate < b for a, b in used):
            continue  # moved up onto another range: look again from there
        if candidate + size - 1 > hi:
            raise NoRoom(f"no free range of {size} ids left between {lo} and {hi}")
        new.append(candidate)
        used = sorted(used + [(candidate, candidate + size)])
    return kept + new


def without(text: str, names: set[str]) -> str:
    """TEXT without the lines of the users called `names`, every other line as it was."""
    return "".join(line + "\n" for line in text.splitlines() if line.split(":", 1)[0] not in names)


def rewrite(text: str, owners: set[str], name: str, starts: list[int], size: int = SIZE) -> str:
    """TEXT without the lines of `owners`, then NAME's ranges."""
    return without(text, owners) + "".join(f"{name}:{start}:{size}\n" for start in starts)


def owner_names(user: str) -> set[str]:
    """How /etc/subuid may name the user: the name, and the uid when the account exists."""
    try:
        return {user, str(pwd.getpwnam(user).pw_uid)}
    except KeyError:
        return {user}


def main():
    p = argparse.ArgumentParser(description="Give USER two free subordinate ranges (and OTHER users none).")
    p.add_argument("user")
    p.add_argument("--none", nargs="*", default=[], metavar="OTHER", help="users whose lines are removed")
    p.add_argument("--subuid", default="/etc/subuid")
    p.add_argument("--subgid", default="/etc/subgid")
    p.add_argument("--login-defs", default="/etc/login.defs")
    args = p.parse_args()
    paths = [args.subuid, args.subgid]
    texts = []
    for path in paths:
        try:
            with open(path) as f:
                texts.append(f.read())
        except FileNotFoundError:
            texts.append("")
    try:
        with open(args.login_defs) as f:
            lo, hi = limits(f.read())
    except FileNotFoundError:
        lo, hi = limits("")
    owners = owner_names(args.user)
    removed = set().union(*(owner_names(u) for u in args.none))
    kept = [without(text, removed) for text in texts]  # their ranges are free for USER
    try:
        starts = pick(kept, owners, lo, hi)
    except NoRoom as e:
        sys.exit(f"tests/subids.py: {e} (in {' and '.join(paths)})")
    for path, text, rest in zip(paths, texts, kept):
        new = rewrite(rest, owners, args.user, starts)
        if new != text:
            with open(path + ".rootsand-tests", "w") as f:
                f.write(new)
            os.chmod(path + ".rootsand-tests", 0o644)
            os.replace(path + ".rootsand-tests", path)
    print(f"{args.user}: " + " ".join(f"{start}:{SIZE}" for start in starts))


if __name__ == "__main__":
    main()
