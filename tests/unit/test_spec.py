import pytest

from rootsand.config import model, spec
from rootsand.errors import RootsandError


@pytest.mark.parametrize("text,expected", [
    ("root", model.User("root")),
    ("keep-id", model.User("keep-id")),
    ("1000", model.User("ids", 1000, 1000)),
    ("1000:50", model.User("ids", 1000, 50)),
    ("0:0", model.User("ids", 0, 0)),
])
def test_parse_user(text, expected):
    assert spec.parse_user(text) == expected


@pytest.mark.parametrize("text", ["", "nobody", "1000:", ":5", "-1", "1:2:3", "4294967295", "1 ", "root "])
def test_parse_user_rejects(text):
    with pytest.raises(RootsandError, match="invalid user"):
        spec.parse_user(text)


@pytest.mark.parametrize("value,seconds", [("90", 90), ("1.5", 1.5), ("30s", 30), ("10m", 600), ("2h", 7200),
                                            ("1d", 86400), (5, 5), (0.25, 0.25), (" 3m ", 180)])
def test_parse_duration(value, seconds):
    assert spec.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "abc", "-1", "0", "1x", "1.5.2", "m", True, 0, -3])
def test_parse_duration_rejects(value):
    with pytest.raises(RootsandError, match="invalid timeout"):
        spec.parse_duration(value)


def test_env_assignment():
    assert spec.parse_env_assignment("A=b=c") == ("A", "b=c")
    assert spec.parse_env_assignment("EMPTY=") == ("EMPTY", "")
    for bad in ["A", "=x", "1A=x", "A B=x"]:
        with pytest.raises(RootsandError, match="KEY=VALUE"):
            spec.parse_env_assignment(bad)


def test_build_env_clears_and_keeps_globs():
    host = {"PATH": "/bin", "HOME": "/h", "SECRET": "s", "LC_ALL": "C", "LC_TIME": "x", "LANG": "C", "TERM": "xterm"}
    env = spec.build_env(host, assignments={"MAKEFLAGS": "-j2"})
    assert env == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "LC_TIME": "x", "LANG": "C", "TERM": "xterm",
                   "MAKEFLAGS": "-j2"}


def test_build_env_gives_a_path_and_set_wins():
    assert spec.build_env({})["PATH"] == spec.FALLBACK_PATH
    assert spec.build_env({"PATH": "/a"}, assignments={"PATH": "/b"})["PATH"] == "/b"
    assert spec.build_env({"X": "1"}, clear=False)["X"] == "1"


def test_hostname_and_name_validation():
    assert spec.validate_hostname("build-1.local") == "build-1.local"
    assert spec.validate_name("job_1.a-b") == "job_1.a-b"
    for bad in ["", "-x", "a b", "a/b", "x" * 65]:
        with pytest.raises(RootsandError):
            spec.validate_hostname(bad)
    for bad in ["", ".x", "a b", "a/b", "x" * 65]:
        with pytest.raises(RootsandError):
            spec.validate_name(bad)
