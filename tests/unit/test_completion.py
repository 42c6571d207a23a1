"""Completion offers what the commands take: every option of `run` and every network mode (issue 19: the
run options were defined four times, and completion had drifted: no --net proxy)."""

import typer.main

from rootsand.cli import completion
from rootsand.cli.commands import app
from rootsand.config.netmodes import NET_MODES


def run_options() -> set[str]:
    command = typer.main.get_command(app).commands["run"]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_completion_offers_every_option_of_run():
    offered = set(completion.RUN_OPTIONS.split())
    assert run_options() - offered == set()
    assert offered - run_options() - {"--help"} == set()  # and nothing run does not take


def test_completion_offers_every_network_mode():
    bash = completion.script("bash")
    assert f'--net) COMPREPLY=($(compgen -W "{" ".join(NET_MODES)}"' in bash
    assert "-l net -xa '" + " ".join(NET_MODES) + "'" in completion.script("fish")
