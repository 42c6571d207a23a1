"""Completion offers what the commands take: every option of `run` and every network mode (issue 19: the
run options were defined four times, and completion had drifted: no --net proxy)."""

import typer.main

from rootsand.cli import completion
from rootsand.cli.commands import app
from rootsand.config.netmodes import NET_CHOICES


def run_options() -> set[str]:
    command = typer.main.get_command(app).commands["run"]
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_completion_offers_every_option_of_run():
    offered = set(completion.RUN_OPTIONS.split())
    assert run_options() - offered == set()
    assert offered - run_options() - {"--help"} == set()  # and nothing run does not take


def test_completion_offers_every_network_mode():
    bash = completion.script("bash")
    assert f'--net) COMPREPLY=($(compgen -W "{" ".join(NET_CHOICES)}"' in bash
    assert "-l net -xa '" + " ".join(NET_CHOICES) + "'" in completion.script("fish")


def test_completion_offers_the_values_the_table_names():
    """After an option whose value is a profile, a network mode, a user or a file, bash offers those."""
    from rootsand.cli.options import RUN

    bash = completion.script("bash")
    for o in RUN:
        if o.values:
            line = next(line for line in bash.splitlines()
                        if o.names[-1] in line.strip().split(")")[0].split("|"))
            assert {"files": "compgen -f", "net": "none slirp", "user": "root keep-id",
                    "profiles": "rootsand profiles", "landlock": "on off scope-only"}[o.values] in line, o.names


def test_the_bash_script_is_valid_bash(tmp_path):
    import subprocess

    script = tmp_path / "completion.bash"
    script.write_text(completion.script("bash"))
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (0, "")


def complete(tmp_path, *words: str) -> list[str]:
    """What bash offers for the command line WORDS (the last one being completed), with a stand-in
    rootsand that lists two profiles and one sandbox."""
    import subprocess

    script = tmp_path / "completion.bash"
    script.write_text(completion.script("bash"))
    stub = ("rootsand() { case $1 in profiles) printf 'agent  Run code\\nbuild  Build\\n';; "
            "ps) echo demo;; esac; }")
    line = " ".join(f"'{w}'" for w in ("rootsand",) + words)
    done = subprocess.run(["bash", "-c", f'source {script}; {stub}; COMP_WORDS=({line}); '
                           f'COMP_CWORD={len(words)}; _rootsand; printf "%s\\n" "${{COMPREPLY[@]}}"'],
                          capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completes_profile_names_after_profiles_show(tmp_path):
    assert complete(tmp_path, "profiles", "") == ["show"]
    assert complete(tmp_path, "profiles", "show", "") == ["agent", "build"]
    assert complete(tmp_path, "profiles", "show", "b") == ["build"]
    assert complete(tmp_path, "profiles", "show", "--t") == ["--template"]
    assert complete(tmp_path, "run", "--profile", "a") == ["agent"]
    assert complete(tmp_path, "exec", "") == ["demo"]
