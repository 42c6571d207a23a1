import pytest

from rootsand.config import idmap
from rootsand.config.idmap import SubidRange
from rootsand.errors import RootsandError

SUBUID = """\
# comment line
alice:100000:65536

bob:200000:65536
1001:300000:1000
alice:400000:10
broken line
alice:notanumber:5
alice:5:-1
alice:1:2:3
 alice:500000:7
"""


def test_parse_matches_name_and_uid_in_file_order():
    assert idmap.parse_subid(SUBUID, "alice", 1001) == [
        SubidRange(100000, 65536), SubidRange(300000, 1000), SubidRange(400000, 10), SubidRange(500000, 7)]


def test_parse_other_user_and_no_match():
    assert idmap.parse_subid(SUBUID, "bob", 1002) == [SubidRange(200000, 65536)]
    assert idmap.parse_subid(SUBUID, "carol", 1003) == []
    assert idmap.parse_subid("", "alice", 1001) == []


def test_parse_skips_malformed_lines():
    text = "alice:x:1\nalice:1\nalice:-5:10\nalice:10:0\nalice:4294967290:100\nalice:10:20\n"
    assert idmap.parse_subid(text, "alice", 1) == [SubidRange(10, 20)]


def test_read_subid_missing_file(tmp_path):
    assert idmap.read_subid(str(tmp_path / "nope"), "alice", 1001) == []


def test_root_map_puts_own_id_at_zero_and_ranges_after():
    lines = idmap.build_map(1001, [SubidRange(100000, 65536), SubidRange(300000, 1000)])
    assert lines == [(0, 1001, 1), (1, 100000, 65536), (65537, 300000, 1000)]


def test_keep_id_map_keeps_own_id_and_fills_around_it():
    lines = idmap.build_map(1001, [SubidRange(100000, 65536)], keep_id=True)
    assert lines == [(0, 100000, 1001), (1001, 1001, 1), (1002, 101001, 64535)]
    inside = sorted((i, c) for i, _, c in lines)
    covered = sum(c for _, c in inside)
    assert covered == 65537 and inside[0][0] == 0


def test_keep_id_own_id_at_range_boundary():
    lines = idmap.build_map(10, [SubidRange(100000, 10), SubidRange(200000, 5)], keep_id=True)
    assert lines == [(0, 100000, 10), (10, 10, 1), (11, 200000, 5)]


def test_range_containing_own_id_is_refused():
    with pytest.raises(RootsandError, match="includes your own id"):
        idmap.build_map(100005, [SubidRange(100000, 65536)])


def test_too_many_ranges_refused():
    with pytest.raises(RootsandError, match="too many"):
        idmap.build_map(1, [SubidRange(1000 + 10 * i, 5) for i in range(400)])


def test_helper_args():
    args = idmap.helper_args("/usr/bin/newuidmap", 4242, [(0, 1001, 1), (1, 100000, 65536), (65537, 300000, 1000)])
    assert args == ["/usr/bin/newuidmap", "4242", "0", "1001", "1", "1", "100000", "65536", "65537", "300000", "1000"]


def test_map_text_and_single_and_identity():
    assert idmap.map_text(idmap.single_map(1001)) == "0 1001 1\n"
    assert idmap.map_text(idmap.single_map(1001, keep_id=True)) == "1001 1001 1\n"
    assert idmap.map_text(idmap.identity_map()) == "0 0 4294967295\n"


RANGES = [SubidRange(100000, 65536)]


def test_plan_with_ranges_and_helpers_uses_helpers():
    p = idmap.plan(1001, 1002, RANGES, RANGES, "/usr/bin/newuidmap", "/usr/bin/newgidmap")
    assert p.uid_helper == "/usr/bin/newuidmap" and p.gid_helper == "/usr/bin/newgidmap"
    assert p.uid_lines == [(0, 1001, 1), (1, 100000, 65536)]
    assert p.gid_lines == [(0, 1002, 1), (1, 100000, 65536)]
    assert not p.deny_setgroups and p.note is None and p.root_mapped


def test_plan_without_ranges_falls_back_with_a_note():
    p = idmap.plan(1001, 1002, [], RANGES, "/usr/bin/newuidmap", "/usr/bin/newgidmap")
    assert p.uid_lines == [(0, 1001, 1)] and p.gid_lines == [(0, 1002, 1)]
    assert p.deny_setgroups and p.uid_helper is None
    assert "/etc/subuid" in p.note


def test_plan_without_helpers_falls_back_with_a_note():
    p = idmap.plan(1001, 1002, RANGES, RANGES, None, "/usr/bin/newgidmap")
    assert p.uid_lines == [(0, 1001, 1)] and p.deny_setgroups and "newuidmap not found" in p.note


def test_plan_single_asked_for():
    p = idmap.plan(1001, 1002, RANGES, RANGES, "/a", "/b", single=True)
    assert p.uid_lines == [(0, 1001, 1)] and p.note is None


def test_plan_keep_id_single_has_no_root():
    p = idmap.plan(1001, 1002, [], [], None, None, keep_id=True)
    assert p.uid_lines == [(1001, 1001, 1)] and not p.root_mapped


def test_plan_as_root():
    p = idmap.plan(0, 0, [], [], None, None)
    assert p.uid_lines == [(0, 0, 4294967295)] and p.uid_helper is None and not p.deny_setgroups
    p = idmap.plan(0, 0, RANGES, RANGES, "/a", "/b")
    assert p.uid_lines == [(0, 0, 1), (1, 100000, 65536)] and p.uid_helper is None
