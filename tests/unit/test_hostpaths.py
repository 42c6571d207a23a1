"""guard/hostpaths.py resolve_source: a link a sandbox could have planted never leads a mount into the home."""

import os

import pytest

from rootsand.errors import RootsandError
from rootsand.guard import hostpaths


@pytest.fixture
def place(tmp_path):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "lnk").symlink_to(home)
    return tmp_path, (str(home),)


def test_a_link_into_the_home_is_refused(place):
    tmp_path, homes = place
    with pytest.raises(RootsandError) as e:
        hostpaths.resolve_source(str(tmp_path / "work" / "lnk"), [], "--bind", homes)
    assert e.value.message == (f"--bind: {tmp_path}/work/lnk is a symbolic link into your home directory (to "
                               f"{homes[0]}), which a sandbox may have planted: it is not followed")


def test_the_decision_rests_on_the_walk_not_on_a_second_lookup(place, monkeypatch):
    """Attack round 4: the link was judged by os.path.realpath(), a second lookup, but followed as readlink()
    read it; a sandbox swapping it with a directory in a loop got the home bound read-write. Here the second
    lookup is made to see the directory."""
    tmp_path, homes = place
    monkeypatch.setattr(hostpaths.os.path, "realpath", lambda path: path)
    with pytest.raises(RootsandError):
        hostpaths.resolve_source(str(tmp_path / "work" / "lnk"), [], "--bind", homes)


def test_a_link_into_the_home_through_later_components_or_to_a_missing_path_is_refused(place):
    tmp_path, homes = place
    (tmp_path / "work" / "up").symlink_to(tmp_path)
    for path in ("up/home/.ssh", "lnk/.config/autostart/new"):  # the second one does not exist yet
        with pytest.raises(RootsandError):
            hostpaths.resolve_source(str(tmp_path / "work" / path), [], "--overlay upper", homes)


def test_a_link_that_stops_being_one_is_an_error_not_a_traceback(place, monkeypatch):
    tmp_path, homes = place

    def swapped(path):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(hostpaths.os, "readlink", swapped)
    with pytest.raises(RootsandError) as e:
        hostpaths.resolve_source(str(tmp_path / "work" / "lnk"), [], "--bind", homes)
    assert e.value.message == f"--bind: {tmp_path}/work/lnk changed while it was being looked at"


def test_a_link_elsewhere_is_followed(place):
    tmp_path, homes = place
    (tmp_path / "data").mkdir()
    (tmp_path / "work" / "d").symlink_to(tmp_path / "data")
    assert hostpaths.resolve_source(str(tmp_path / "work" / "d"), [], "--bind", homes) == str(tmp_path / "data")


def test_a_real_path_looked_up_while_a_link_is_swapped_is_an_error_not_a_traceback(monkeypatch):
    """Attack round 4: os.path.realpath raises OSError when it sees a link and then a directory."""
    def racing(path):
        raise OSError(22, "Invalid argument", path)

    monkeypatch.setattr(hostpaths.os.path, "realpath", racing)
    with pytest.raises(RootsandError) as e:
        hostpaths.real_path("/tmp/x")
    assert e.value.message == "/tmp/x changed while it was being looked at"
