"""Subordinate id ranges and the uid/gid maps built from them. Pure: no system calls but file reads."""

from rootsand.config.model import Record
from rootsand.errors import RootsandError

# One line of a uid_map/gid_map: ids [inside, inside+count) are host ids [outside, outside+count).
MapLine = tuple[int, int, int]

# The kernel accepts at most this many lines in one map (Linux >= 4.15).
MAX_MAP_LINES = 340


class SubidRange(Record):
    __slots__ = ("start", "count")
    FIELDS = {"start": 0, "count": 0}


def parse_subid(text: str, user: str, uid: int) -> list[SubidRange]:
    """The ranges /etc/subuid (or /etc/subgid) grants a user, matched by name or numeric id, in file order.

    Like shadow's own parser, lines that are blank, comments or malformed are passed over.
    """
    ranges = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(fields[1], 10), int(fields[2], 10)
        except ValueError:
            continue
        if start < 0 or count <= 0 or start + count > 2**32 - 1:
            continue
        ranges.append(SubidRange(start, count))
    return ranges


def read_subid(path: str, user: str, uid: int) -> list[SubidRange]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return parse_subid(f.read(), user, uid)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise RootsandError(f"cannot read {path}: {e.strerror}") from None


def build_map(own_id: int, ranges: list[SubidRange], keep_id: bool = False) -> list[MapLine]:
    """The map lines for a sandbox: your own id inside as 0 (or as itself with keep_id), the ranges after it.

    Root mode:    0 -> own id, then 1.. -> each range in turn (what podman and rootlesskit write).
    keep_id mode: own id -> own id; the other inside ids 0, 1, ... skip it and come from the ranges in turn,
                  so files you own stay yours inside (podman's --userns=keep-id).
    """
    for r in ranges:
        if r.start <= own_id < r.start + r.count:
            raise RootsandError(
                f"the subordinate range {r.start}:{r.count} includes your own id {own_id}",
                hint="fix /etc/subuid and /etc/subgid: a user's ranges must not contain the user's own id",
            )
    if not keep_id:
        lines, inside = [(0, own_id, 1)], 1
        for r in ranges:
            lines.append((inside, r.start, r.count))
            inside += r.count
        return _checked(lines)

    lines = [(own_id, own_id, 1)]
    inside = 0
    for r in ranges:
        start, count = r.start, r.count
        if inside < own_id < inside + count:  # this range straddles own_id: split it around it
            below = own_id - inside
            lines.append((inside, start, below))
            start, count, inside = start + below, count - below, own_id
        if inside == own_id:
            inside += 1
        lines.append((inside, start, count))
        inside += count
    return _checked(sorted(lines))


def _checked(lines: list[MapLine]) -> list[MapLine]:
    if len(lines) > MAX_MAP_LINES:
        raise RootsandError(f"too many subordinate ranges: {len(lines) - 1} (the kernel takes {MAX_MAP_LINES - 1})")
    if any(inside + count > 2**32 - 1 for inside, _, count in lines):
        raise RootsandError("the subordinate ranges add up to more ids than a map can hold")
    return lines


def single_map(own_id: int, keep_id: bool = False) -> list[MapLine]:
    """The fallback with no subordinate ids: only your own id, as 0 inside (or as itself with keep_id)."""
    return [(own_id if keep_id else 0, own_id, 1)]


def identity_map() -> list[MapLine]:
    """Real root's map: every id stands for itself."""
    return [(0, 0, 2**32 - 1)]


def helper_args(helper: str, pid: int, lines: list[MapLine]) -> list[str]:
    """argv for newuidmap/newgidmap: `HELPER PID INSIDE OUTSIDE COUNT [INSIDE OUTSIDE COUNT ...]`."""
    args = [helper, str(pid)]
    for line in lines:
        args.extend(str(n) for n in line)
    return args


def map_text(lines: list[MapLine]) -> str:
    """The text written to /proc/PID/uid_map directly (one write, one line per extent)."""
    return "".join(f"{inside} {outside} {count}\n" for inside, outside, count in lines)


def mapped(lines: list[MapLine], inside_id: int) -> bool:
    return any(inside <= inside_id < inside + count for inside, _, count in lines)


def inside_of(lines: list[MapLine], outside_id: int) -> int:
    """The id inside that `outside_id` is; 0 when it is not mapped (then setup runs as whoever it is)."""
    for inside, outside, count in lines:
        if outside <= outside_id < outside + count:
            return inside + outside_id - outside
    return 0


class IdPlan(Record):
    """How the launcher writes the sandbox's maps: through the setuid helpers, or directly."""

    __slots__ = ("uid_lines", "gid_lines", "uid_helper", "gid_helper", "deny_setgroups", "note")
    FIELDS = {
        "uid_lines": list,  # MapLines
        "gid_lines": list,
        "uid_helper": None,  # newuidmap, when the helpers write the maps
        "gid_helper": None,
        "deny_setgroups": False,  # an unprivileged direct write must deny setgroups first
        "note": None,  # said once on stderr: why the sandbox has fewer ids than it could
    }

    @classmethod
    def from_json(cls, data: dict) -> "IdPlan":
        lines = {k: [tuple(line) for line in data.get(k, [])] for k in ("uid_lines", "gid_lines")}
        return super().from_json({**data, **lines})

    @property
    def root_mapped(self) -> bool:
        return mapped(self.uid_lines, 0) and mapped(self.gid_lines, 0)


def plan(uid: int, gid: int, subuids: list[SubidRange], subgids: list[SubidRange],
         uid_helper: str | None, gid_helper: str | None, keep_id: bool = False,
         single: bool = False, nested: str | None = None, inside_ids: tuple[int, int] | None = None) -> IdPlan:
    """Decide the maps from the caller's ids, its subordinate ranges and the helpers found on the host.

    `nested` says why the setuid helpers cannot help (inside another user namespace, whose ids are all the
    caller has; or no_new_privs, which keeps setuid from working): then only the caller's own id is mapped,
    as `inside_ids` when given (mapping 0 inside needs CAP_SETFCAP, which a sandbox's command lacks).
    """
    if nested:
        uid_in, gid_in = inside_ids if inside_ids else (uid, gid) if keep_id else (0, 0)
        return IdPlan([(uid_in, uid, 1)], [(gid_in, gid, 1)], deny_setgroups=True,
                      note=f"{nested}: the sandbox maps only your own id" + (
                          f", as {uid_in} inside (root would need CAP_SETFCAP)" if inside_ids else ""))
    if uid == 0:
        if single or not (subuids and subgids):
            return IdPlan(identity_map(), identity_map())
        return IdPlan(build_map(0, subuids, keep_id), build_map(0, subgids, keep_id))
    fallback = IdPlan(single_map(uid, keep_id), single_map(gid, keep_id), deny_setgroups=True)
    if single:
        return fallback
    if not subuids or not subgids:
        missing = "/etc/subuid" if not subuids else "/etc/subgid"
        return IdPlan(fallback.uid_lines, fallback.gid_lines, deny_setgroups=True,
                      note=f"no range for you in {missing}: the sandbox maps only your own id "
                           "(rootsand doctor names a free range to add, which no other user has)")
    if not uid_helper or not gid_helper:
        missing = "newuidmap" if not uid_helper else "newgidmap"
        return IdPlan(fallback.uid_lines, fallback.gid_lines, deny_setgroups=True,
                      note=f"{missing} not found: the sandbox maps only your own id "
                           "(install the 'uidmap' package for the full range)")
    return IdPlan(build_map(uid, subuids, keep_id), build_map(gid, subgids, keep_id), uid_helper, gid_helper)
