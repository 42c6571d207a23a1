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


# ------------------------------------------------------------------------ podman's run options (issue 21)

def test_env_entries_take_podmans_forms():
    host = {"FOO": "bar", "FOOX": "baz", "OTHER": "o"}
    assert model.env_entries(["A=1", "FOO", "MISSING"], host) == {"A": "1", "FOO": "bar"}  # unset: left out
    assert model.env_entries(["FO*"], host) == {"FOO": "bar", "FOOX": "baz"}
    for bad in ["1X", "A B", "*", "F*O", "F**"]:
        with pytest.raises(RootsandError, match="expected KEY=VALUE, KEY"):
            model.env_entries([bad], host)


@pytest.mark.parametrize("kept,add,drop,result", [
    ([], [], [], []),
    (["CAP_CHOWN"], ["net_raw"], [], ["CAP_CHOWN", "CAP_NET_RAW"]),
    (["CAP_CHOWN", "CAP_FOWNER"], [], ["chown"], ["CAP_FOWNER"]),
    (["CAP_CHOWN"], ["CAP_NET_RAW"], ["all"], ["CAP_NET_RAW"]),  # drop first, then add: podman's order
    ("all", [], [], "all"),
    ("all", ["kill"], [], "all"),
    ([], ["ALL"], [], "all"),
])
def test_cap_add_and_drop(kept, add, drop, result):
    assert spec.capabilities(kept, add, drop) == result


def test_cap_drop_of_all_but_one():
    left = spec.capabilities("all", [], ["CAP_SYS_ADMIN"])
    assert "CAP_SYS_ADMIN" not in left and len(left) == len(model.CAPABILITIES) - 1


def test_a_capability_the_kernel_does_not_have_is_refused():
    with pytest.raises(RootsandError) as e:
        spec.capabilities([], ["CAP_BOGUS"], [])
    assert e.value.message == "invalid --cap-add 'CAP_BOGUS': unknown capability 'CAP_BOGUS'"


@pytest.mark.parametrize("text,expected", [
    ("/a:/b", ("bind", "/a", "/b")),
    ("./src:/src:ro", ("ro-bind", "/work/src", "/src")),
    ("../x:/x:rw,Z", ("bind", "/x", "/x")),
    (".:/w:z", ("bind", "/work", "/w")),
])
def test_volume_as_podman_writes_it(text, expected):
    assert spec._volume(text, "/work") == expected


@pytest.mark.parametrize("text,fragment", [
    ("data:/data", "would be a podman named volume"),
    ("/a", "expected SRC:DST"),
    ("/a:rel", "expected SRC:DST"),
    ("/a:/b:ro:x", "expected SRC:DST"),
    ("/a:/b:O", "options are ro or rw"),
    ("/a:/b:ro,rw", "options are ro or rw"),
])
def test_volume_refusals(text, fragment):
    with pytest.raises(RootsandError, match=fragment):
        spec._volume(text, "/work")


@pytest.mark.parametrize("cpus", ["0", "-1", "nan", "inf", "x", "70000"])
def test_cpus_refusals(cpus):
    with pytest.raises(RootsandError):
        model.parse_cpus(cpus)


@pytest.mark.parametrize("pids", ["0", "-1", "1.5", "x", str(2**31)])
def test_pids_refusals(pids):
    with pytest.raises(RootsandError):
        model.parse_pids(pids)
