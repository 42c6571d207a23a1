"""The Landlock ruleset as the plan derives it from its own mounts (security/landlockrules.py), what each
profile gets, how the profile key and --landlock are checked, and what a kernel of an older ABI leaves out."""

import pytest

from rootsand.config import plan, profile
from rootsand.errors import RootsandError
from rootsand.security import landlockrules
from rootsand.security.landlockrules import WRITE, Ruleset

from test_plan import FACTS, make_spec, where  # noqa: F401 - where is a fixture


def rules_of(where, name="default", **options) -> dict[str, list[str]]:
    ruleset = plan.plan(make_spec(where, name, **options), FACTS).landlock
    return {rule.path.replace(str(where), "{tmp}"): rule.access for rule in ruleset.rules}


def writable(rules: dict) -> set[str]:
    return {path for path, access in rules.items() if "make_reg" in access}


@pytest.mark.parametrize("name, mode", [("default", "scope-only"), ("build", "scope-only"), ("net", "scope-only"),
                                        ("fakeroot", "scope-only"), ("untrusted", "on"), ("agent", "on")])
def test_each_profile_gets_its_landlock_mode_and_every_one_its_scopes(where, name, mode):
    ruleset = plan.plan(make_spec(where, name), FACTS).landlock
    assert ruleset.mode == mode
    assert ruleset.scopes == ["abstract_unix_socket", "signal"]
    assert bool(ruleset.rules) == bool(ruleset.handled) == (mode == "on")


def test_untrusted_writes_only_beneath_its_writable_mounts(where):
    rules = rules_of(where, "untrusted")
    # the current directory's bind is covered by the overlay: one rule there, the overlay's
    assert writable(rules) == {"/tmp", "{tmp}/home", "{tmp}/home/project", "/dev/shm"}
    assert rules["/"] == ["read_file", "read_dir"]  # the root: read, and nothing runs from it
    assert rules["/usr"] == ["execute"] and rules["/etc"] == ["execute"]
    # noexec mounts get no execute; their files and devices may be written, nothing made there
    assert rules["/proc"] == rules["/dev"] == ["write_file", "truncate"]
    assert "execute" not in rules["/dev/shm"]
    assert set(WRITE) <= set(rules["{tmp}/home/project"])


def test_a_writable_mount_hidden_by_a_later_read_only_one_gets_no_write_rights(where, tmp_path):
    (tmp_path / "data").mkdir()
    rules = rules_of(where, "untrusted", binds=[f"{tmp_path}/data:/data"], ro_binds=[f"{tmp_path}/data:/data"])
    assert rules["/data"] == ["execute"]
    rules = rules_of(where, "untrusted", binds=[f"{tmp_path}/data:/data"])
    assert "write_file" in rules["/data"]


def test_a_home_the_home_rule_keeps_read_only_is_writable_only_in_its_exceptions(where):
    home = where / "home"
    (home / ".cache" / "pip").mkdir(parents=True)
    the_plan = plan.plan(make_spec(where, "untrusted", binds=[f"{home}:/h"], unprotect=["~/.cache/pip"]), FACTS)
    rules = {rule.path: rule.access for rule in the_plan.landlock.rules}
    assert rules["/h"] == ["execute"]
    assert "make_reg" in rules["/h/.cache/pip"]


def test_scope_only_and_off_grant_nothing_and_handle_no_file_rights(where):
    scoped = plan.plan(make_spec(where, "untrusted", landlock="scope-only"), FACTS).landlock
    assert (scoped.mode, scoped.handled, scoped.rules, scoped.scopes) == (
        "scope-only", [], [], ["abstract_unix_socket", "signal"])
    off = plan.plan(make_spec(where, "untrusted", landlock="off"), FACTS).landlock
    assert off == Ruleset(mode="off")
    assert plan.plan(make_spec(where, "default", landlock="on"), FACTS).landlock.mode == "on"


def test_an_invalid_landlock_option_is_refused(where):
    with pytest.raises(RootsandError, match=r"invalid --landlock 'yes': expected on, off or scope-only"):
        make_spec(where, "default", landlock="yes")


@pytest.mark.parametrize("value, expected", [("true", "on"), ("false", "off"), ('"scope-only"', "scope-only")])
def test_the_profile_key_takes_true_false_or_scope_only(where, value, expected):
    path = where / "mine.toml"
    path.write_text(f'extends = "default"\n[security]\nlandlock = {value}\n')
    loaded = profile.load(str(path), profile.Variables(cwd=str(where), home=str(where / "home"), user="alice",
                                                       uid=1000, gid=1000, xdg_runtime_dir=None, env={}))
    assert loaded.landlock == expected
    assert f"landlock = {value}" in profile.to_toml(loaded)


@pytest.mark.parametrize("value", ['"on"', "1", '"yes"', "[]"])
def test_the_profile_key_refuses_anything_else_naming_file_and_line(where, value):
    path = where / "mine.toml"
    path.write_text(f'extends = "default"\n[security]\nlandlock = {value}\n')
    with pytest.raises(RootsandError, match=r'mine.toml, line 3: security.landlock: expected true, false or "scope-only"'):
        profile.load(str(path), profile.Variables(cwd=str(where), home=str(where / "home"), user="alice",
                                                  uid=1000, gid=1000, xdg_runtime_dir=None, env={}))


def test_what_an_older_kernel_cannot_enforce_is_named():
    full = Ruleset(mode="on", handled=landlockrules.HANDLED, scopes=list(landlockrules.SCOPES))
    assert landlockrules.unsupported(full, 7) == []
    assert landlockrules.unsupported(full, 5) == ["scope abstract_unix_socket", "scope signal"]
    assert landlockrules.unsupported(full, 2) == ["truncate", "scope abstract_unix_socket", "scope signal"]
    assert landlockrules.unsupported(full, 1)[0].startswith("the file system rules")
    assert landlockrules.unsupported(full, 0) == ["all of it: this kernel has no Landlock"]
    assert landlockrules.unsupported(Ruleset(mode="scope-only", scopes=["signal"]), 4) == ["scope signal"]
    assert landlockrules.unsupported(Ruleset(mode="off"), 0) == []


def test_the_listing_shows_the_rules_with_their_reasons(where):
    lines = plan.describe(plan.plan(make_spec(where, "untrusted"), FACTS))
    assert "  landlock: on; scoped: abstract unix socket, signal" in lines
    usr = next(line for line in lines if line.startswith("    landlock /usr "))
    assert usr.split()[2] == "execute" and "default.toml, line" in usr
    assert "  landlock: scope-only; scoped: abstract unix socket, signal" in plan.describe(
        plan.plan(make_spec(where, "default"), FACTS))
