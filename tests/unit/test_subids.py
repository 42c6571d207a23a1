"""tests/subids.py: the test user's subordinate ranges are free ones, as useradd picks them, and stay put."""

import subprocess
import sys

import pytest

from subids import SIZE, NoRoom, limits, main, pick, rewrite, without

LO, HI = 100000, 600100000
ALICE = "alice:100000:65536\n"  # what useradd gives the first normal user on Debian


def test_next_to_the_first_user_useradd_made():
    assert pick([ALICE, ALICE], {"rootsand-test"}, LO, HI) == [165536, 231072]


def test_the_old_fixed_ranges_give_way_where_they_overlap_someone():
    """tests/run.sh used to write 100000 and 300000 whoever had them: the one alice has is replaced."""
    old = ALICE + "rootsand-test:100000:65536\nrootsand-test:300000:65536\n"
    assert pick([old, old], {"rootsand-test"}, LO, HI) == [300000, 165536]


def test_a_rerun_keeps_the_ranges_it_gave():
    text = ALICE + "bob:165536:65536\n"
    first = pick([text, text], {"rootsand-test"}, LO, HI)
    again = rewrite(text, {"rootsand-test"}, "rootsand-test", first)
    assert pick([again, again], {"rootsand-test"}, LO, HI) == first == [231072, 296608]
    assert rewrite(again, {"rootsand-test"}, "rootsand-test", first) == again


def test_gaps_between_other_ranges_are_used_lowest_first():
    text = "a:100000:65536\nb:400000:65536\nc:165536:1000\n"
    assert pick([text, text], {"t"}, LO, HI) == [166536, 232072]
    assert pick([text, text], {"t"}, LO, HI, count=4) == [166536, 232072, 297608, 465536]


def test_a_range_must_be_free_in_both_files():
    """The tests expect a file's uid and gid inside to land on the same host id: one start for both."""
    subuid, subgid = ALICE, "carol:165536:65536\n" + ALICE
    assert pick([subuid, subgid], {"t"}, LO, HI) == [231072, 296608]


def test_a_kept_range_must_be_the_users_in_both_files():
    subuid = "t:165536:65536\nt:400000:65536\n"
    subgid = "t:400000:65536\n"
    assert pick([subuid, subgid], {"t"}, LO, HI) == [400000, 100000]


def test_lines_that_name_the_user_by_uid_are_the_users():
    text = ALICE + "1001:300000:65536\n"
    assert pick([text, text], {"rootsand-test", "1001"}, LO, HI)[0] == 300000


def test_login_defs_bounds_are_kept():
    defs = "# comment\nSUB_UID_MIN   200000\nSUB_UID_MAX 400000\nSUB_GID_MIN 150000\nSUB_GID_MAX\t500000\n"
    lo, hi = limits(defs)
    assert (lo, hi) == (200000, 400000)
    assert pick(["", ""], {"t"}, lo, hi) == [200000, 265536]
    assert limits("") == (100000, 600100000)  # shadow's defaults
    with pytest.raises(NoRoom, match="no free range of 65536 ids left between 200000 and 300000"):
        pick(["", ""], {"t"}, 200000, 300000)


def test_a_range_outside_the_bounds_is_not_kept():
    text = "t:50000:65536\n"
    assert pick([text, text], {"t"}, LO, HI) == [100000, 165536]


def test_the_files_keep_everyone_elses_lines_and_lose_the_removed_users():
    text = "# local ranges\nalice:100000:65536\nrootsand-nosub:165536:65536\nrootsand-test:1:2\n"
    new = rewrite(without(text, {"rootsand-nosub"}), {"rootsand-test"}, "rootsand-test", [231072, 296608])
    assert new == "# local ranges\nalice:100000:65536\nrootsand-test:231072:65536\nrootsand-test:296608:65536\n"


def test_the_command_rewrites_both_files(tmp_path, monkeypatch, capsys):
    subuid, subgid, defs = tmp_path / "subuid", tmp_path / "subgid", tmp_path / "login.defs"
    # As useradd leaves them on Debian: each new account gets the next range, the one without ranges too.
    subuid.write_text(ALICE + "rootsand-test:165536:65536\nrootsand-nosub:231072:65536\n")
    subgid.write_text(ALICE + "rootsand-test:165536:65536\nrootsand-nosub:231072:65536\n")
    defs.write_text("SUB_UID_MIN 100000\n")
    argv = ["subids.py", "rootsand-test", "--none", "rootsand-nosub", "--subuid", str(subuid), "--subgid",
            str(subgid), "--login-defs", str(defs)]
    monkeypatch.setattr(sys, "argv", argv)
    main()
    assert capsys.readouterr().out == f"rootsand-test: 165536:{SIZE} 231072:{SIZE}\n"
    expected = ALICE + "rootsand-test:165536:65536\nrootsand-test:231072:65536\n"
    assert subuid.read_text() == subgid.read_text() == expected
    main()  # a rerun changes nothing
    assert capsys.readouterr().out == f"rootsand-test: 165536:{SIZE} 231072:{SIZE}\n"
    assert subuid.read_text() == subgid.read_text() == expected


def test_no_room_is_one_line_and_status_1(tmp_path):
    full = tmp_path / "subuid"
    full.write_text("alice:100000:600000000\n")
    defs = tmp_path / "login.defs"
    defs.write_text("")
    script = __import__("subids").__file__
    done = subprocess.run([sys.executable, script, "t", "--subuid", str(full), "--subgid", str(full), "--login-defs",
                           str(defs)], capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (f"tests/subids.py: no free range of 65536 ids left between 100000 and 600100000 "
                           f"(in {full} and {full})\n")
