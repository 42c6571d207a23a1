"""security.hide and --unhide before anything runs: the patterns, the profile key, the spec and the plan."""

import pytest

from rootsand.cli.options import RunOptions
from rootsand.config import plan, profile, spec
from rootsand.config.model import Mount, parse_hide_entry
from rootsand.errors import RootsandError
from rootsand.runtime.fs.hide import pattern_matcher


@pytest.mark.parametrize("text, normal", [("**/.env", "**/.env"), ("./config//x.pem", "config/x.pem"),
                                          ("**/secrets/**/*.json", "**/secrets/**/*.json")])
def test_hide_entries_are_normalised(text, normal):
    assert parse_hide_entry(text) == normal


@pytest.mark.parametrize("text", ["", "/etc/x", "../x", "a/../b", "**", "a/**", "a**/x", "x\0"])
def test_bad_hide_entries_are_refused(text):
    with pytest.raises(RootsandError, match="invalid hide pattern"):
        parse_hide_entry(text)


@pytest.mark.parametrize("pattern, yes, no", [
    ("**/.env", [".env", "a/.env", "a/b/c/.env"], [".env.example", "a/x.env", "a.env/x"]),
    ("**/*.pem", ["k.pem", ".pem", "a/b/.hidden.pem"], ["k.pem.txt", "k.pemx", "a.pem/b"]),
    (".env", [".env"], ["a/.env"]),
    ("config/*.key", ["config/a.key"], ["a.key", "x/config/a.key", "config/a/b.key"]),
    ("**/secrets/**/*.json", ["secrets/a.json", "x/secrets/y/z.json"], ["secrets.json", "x/secret/a.json"]),
    ("**/id_[re]*", ["id_rsa", "a/id_ecdsa", "id_ed25519"], ["id_dsa"]),
    ("**/[!.]*.p12", ["a.p12"], [".a.p12"]),
    ("**/.env.*.local", [".env.development.local"], [".env.local", ".env.example"]),
    ("**/a+b(c)?.txt", ["a+b(c)1.txt"], ["aab(c)1.txt", "a+b(c).txt"]),
])
def test_patterns_match_paths_relative_to_the_writable_directory(pattern, yes, no):
    matches = pattern_matcher([pattern])
    assert [path for path in yes + no if matches(path, path.rsplit("/", 1)[-1])] == yes


def test_the_agent_profile_hides_secrets_but_not_templates(tmp_path):
    agent = profile.load("agent", profile.Variables.from_host(str(tmp_path)))
    matches = pattern_matcher(agent.hide)
    hidden = [".env", "app/.env.local", ".env.production.local", "certs/server.pem", "tls.key", ".npmrc",
              "pkg/.npmrc", ".pypirc", ".netrc", ".git-credentials", "deploy/id_ed25519"]
    shown = [".env.example", ".env.sample", "README.md", "package.json", "src/env.ts", "id_rsa.pub", ".gitignore"]
    assert [path for path in hidden + shown if matches(path, path.rsplit("/", 1)[-1])] == hidden
    assert profile.load("default", profile.Variables.from_host(str(tmp_path))).hide == []


def test_a_bad_hide_pattern_in_a_profile_names_its_line(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('extends = "default"\n[security]\nhide = ["/etc/shadow"]\n')
    with pytest.raises(RootsandError, match=rf"profile {path}, line 3: security.hide: invalid hide pattern"):
        profile.load(str(path), profile.Variables.from_host(str(tmp_path)))


def test_unhide_lifts_a_pattern_as_written_or_shows_a_path():
    hide = ["**/.env", "**/*.pem"]
    assert spec.hidden_patterns(hide, ["**/*.pem"], "/p") == (["**/.env"], [])
    assert spec.hidden_patterns(hide, ["./**/*.pem"], "/p") == (["**/.env"], [])  # the same pattern, normalised
    assert spec.hidden_patterns(hide, [".env", "certs/", "/q/x.pem"], "/p") == (hide, ["/p/.env", "/p/certs", "/q/x.pem"])
    with pytest.raises(RootsandError, match="invalid --unhide ''"):
        spec.hidden_patterns(hide, [""], "/p")


def binds(*pairs, later=()):
    return [Mount(type="bind", src=src, dst=dst) for src, dst in pairs] + list(later)


def test_hidden_applies_in_every_writable_bind_but_what_unhide_shows():
    mounts = binds(("/p", "/p"), ("/data", "/mnt/data"))
    hidden = plan.hidden_paths(mounts, ["**/.env"], ["/p/sub/.env", "/data"])
    assert [(h.mount, h.dst, h.patterns, h.shown) for h in hidden] == [(0, "/p", ["**/.env"], ["sub/.env"])]
    assert plan.hidden_paths(mounts, [], []) == []
    # a bind a later mount covers (untrusted's overlay) shows nothing of itself: the overlay is walked instead
    covered = binds(("/p", "/p"), later=[Mount(type="overlay", lower=["/p"], dst="/p")])
    assert [(h.mount, h.dst, h.shown) for h in plan.hidden_paths(covered, ["**/.env"], ["/p/x"])] == [(1, "/p", ["x"])]


@pytest.mark.parametrize("hide, unhide, message", [
    ([], ["/p/.env"], "--unhide /p/.env: this profile hides nothing (security.hide is empty)"),
    (["**/.env"], ["/etc/passwd"], "--unhide /etc/passwd: not in a directory the sandbox can write"),
])
def test_an_unhide_that_shows_nothing_is_an_error(hide, unhide, message):
    with pytest.raises(RootsandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.hidden_paths(binds(("/p", "/p")), hide, unhide)


def test_unhide_is_a_run_option():
    assert RunOptions(unhide=[".env"]).unhide == [".env"]
