"""The fast parser of `rootsand run` (cli/main.py) must agree with the typer command (commands.py) it shortcuts."""

import pytest
import typer.main

from rootsand.cli import commands, main, runner


def _typer_run_params():
    group = typer.main.get_command(commands.app)
    return group.commands["run"].params


def test_fast_tables_name_every_typer_option():
    typer_opts = {}
    for p in _typer_run_params():
        for opt in getattr(p, "opts", []):
            if opt.startswith("-"):
                typer_opts[opt] = p.name
    fast = {**main.RUN_FLAGS, **main.RUN_VALUES, **main.RUN_LISTS}
    assert set(fast) == set(typer_opts)
    rename = {"bind": "binds", "ro_bind": "ro_binds", "overlay": "overlays", "allow_host": "allow_hosts"}
    for opt, attr in fast.items():
        assert rename.get(typer_opts[opt], typer_opts[opt]) == attr, opt


def _typer_parse(args, monkeypatch):
    seen = {}
    monkeypatch.setattr(runner, "run_sandbox", lambda options: seen.setdefault("options", options) and 0)
    try:
        commands.app(["run", *args], standalone_mode=False, prog_name="rootsand")
    except typer.Exit:
        pass
    return seen["options"]


@pytest.mark.parametrize("args", [
    [],
    ["--", "make", "-j2"],
    ["make", "-j2", "--profile", "x"],
    ["-p", "build", "--net=none", "-e", "A=1", "--env", "B=2", "-v", "--", "sh", "-c", "exit 3"],
    ["--bind", "/a:/b", "--bind=/c", "--ro-bind", "/d", "--tmpfs", "/t", "--overlay", "/o:/p", "true"],
    ["--hostname", "h", "--chdir", "/", "--user", "keep-id", "--timeout", "10m", "--name", "n", "--rootfs", "/r",
     "--json-status", "/s", "--debug", "true", "--hostname", "x"],
    ["-", "x"],
    ["--dry-run", "-v", "sh", "-c", 'echo "$@"', "x", "--debug"],
])
def test_fast_parse_equals_typer(args, monkeypatch):
    fast = main.parse_run_fast(args)
    assert fast is not None
    assert fast == _typer_parse(args, monkeypatch)


@pytest.mark.parametrize("args", [["--help"], ["-h"], ["--bogus"], ["--timeout"], ["-ve", "A=1"], ["--verbose=1"]])
def test_unusual_arguments_go_to_typer(args):
    assert main.parse_run_fast(args) is None


def test_a_debug_flag_after_the_command_belongs_to_the_command():
    options = main.parse_run_fast(["sh", "-c", 'echo "$@"', "x", "--debug"])
    assert options.command == ["sh", "-c", 'echo "$@"', "x", "--debug"] and not options.debug
    assert main.parse_run_fast(["--debug", "--", "true"]).debug
