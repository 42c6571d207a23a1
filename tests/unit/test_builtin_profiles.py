"""The built-in profiles are shipped parsed (profiles/parsed.py), so a run with one need not import
tomllib. The parse must be the file's own: current in the repository, in tomllib's key order, and ignored
for a file whose text is not exactly the one parsed."""

import json

import os
import tomllib

from rootsand.config import lookup, profile, tomlfile
from rootsand.profiles import parsed

REGENERATE = ("python3 -c 'from rootsand.config import tomlfile; "
              "open(\"profiles/parsed.py\", \"w\").write(tomlfile.parsed_module(\"profiles\"))'")


def test_the_shipped_parse_is_that_of_the_files_beside_it():
    directory = lookup.builtin_dir()
    with open(os.path.join(directory, "parsed.py")) as f:
        assert f.read() == tomlfile.parsed_module(directory), f"profiles/parsed.py is stale: {REGENERATE}"
    names = sorted(n for n in os.listdir(directory) if n.endswith(".toml"))
    assert sorted(parsed.PARSED) == names and "default.toml" in names


def test_a_built_in_profile_reads_as_tomllib_reads_it():
    path = os.path.join(lookup.builtin_dir(), "untrusted.toml")
    text, data = tomlfile.read(path, "profile", known=profile._builtin_parse(path))
    with open(path, "rb") as f:
        assert json.dumps(data) == json.dumps(tomllib.load(f))  # the same keys, values and order
    assert data["security"]["capabilities"] == []


def test_a_file_whose_text_changed_is_parsed_afresh(tmp_path):
    path = tmp_path / "default.toml"
    path.write_text('description = "edited"\n')
    stale = parsed.PARSED["default.toml"]
    assert tomlfile.read(str(path), "profile", known=stale)[1] == {"description": "edited"}
    # One byte more (same parse for tomllib, but not the text parsed) is parsed afresh too.
    made_up = ('description = "edited"\n', '{"description": "shipped"}')
    path.write_text('description = "edited"\n\n')
    assert tomlfile.read(str(path), "profile", known=made_up)[1] == {"description": "edited"}
    # The same text does take the shipped parse (here a made-up one, to see it was used).
    path.write_text('description = "edited"\n')
    assert tomlfile.read(str(path), "profile", known=made_up)[1] == {"description": "shipped"}


def test_a_profile_outside_the_built_in_directory_gets_no_shipped_parse(tmp_path):
    copy = tmp_path / "default.toml"
    copy.write_bytes(open(os.path.join(lookup.builtin_dir(), "default.toml"), "rb").read())
    assert profile._builtin_parse(str(copy)) is None


def test_each_read_gets_its_own_table():
    path = os.path.join(lookup.builtin_dir(), "default.toml")
    first = tomlfile.read(path, "profile", known=profile._builtin_parse(path))[1]
    first.clear()
    second = tomlfile.read(path, "profile", known=profile._builtin_parse(path))[1]
    assert second and second != first
