"""rootsand(1), made from the commands and options --help shows (typer's click tree, whose `run` options
come from cli/options.py's table): one definition of each option for both. man/rootsand.1 in the source
tree is its output, installed with the package (share/man/man1); tests/unit/test_manpage.py keeps it
current:  python3 -m rootsand.cli.manpage > man/rootsand.1"""

import re

from rootsand import __version__

SECTIONS = """.SH EXIT STATUS
The command's own; 128+N when signal N killed it; 124 on \\-\\-timeout; 125 when rootsand itself failed
(nothing was run), said in one "rootsand: error:" line; 126 when the command cannot be executed; 127 when
it is not found.
.SH FILES
.TP
.I ~/.config/rootsand/profiles/NAME.toml
your profiles, found by name before the built-in ones.
.TP
.I $XDG_RUNTIME_DIR/rootsand/sandboxes/
the registry of your running sandboxes (/tmp/rootsand-UID/ without XDG_RUNTIME_DIR).
.TP
.I /etc/subuid, /etc/subgid
your subordinate ids, mapped into sandboxes through newuidmap(1) and newgidmap(1).
.SH SEE ALSO
bwrap(1), podman-run(1), unshare(1), newuidmap(1), subuid(5), user_namespaces(7).
The README in rootsand's source tree has the profiles, the security model and measurements.
"""


def _roff(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.M)


def _paragraphs(text: str) -> str:
    return "\n.PP\n".join(_roff(" ".join(p.split())) for p in (text or "").strip().split("\n\n") if p.strip())


def _options(command) -> list[str]:
    lines = []
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        names = ", ".join(param.opts + param.secondary_opts)
        metavar = "" if param.is_flag else " " + (param.metavar or param.name.upper())
        lines += [".TP", f"\\fB{_roff(names)}\\fR{_roff(metavar)}", _roff(param.help or "")]
    return lines


def _usage(path: list[str], command) -> str:
    args = " ".join(f"[{p.name.upper()}...]" if p.nargs == -1 else p.name.upper()
                    for p in command.params if p.param_type_name == "argument")
    return _roff(" ".join(["rootsand", *path, "[OPTIONS]", args]).strip())


def _commands(group, path: list[str]) -> list[str]:
    lines = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if getattr(command, "hidden", False):
            continue
        if hasattr(command, "commands") and command.commands:
            if command.help:
                lines += [".SS " + _roff(" ".join(["rootsand", *path, name])), _paragraphs(command.help)]
            lines += _commands(command, path + [name])
            continue
        lines += [".SS " + _roff(" ".join(["rootsand", *path, name])), ".B " + _usage(path + [name], command),
                  ".PP", _paragraphs(command.help)]
        lines += _options(command)
    return lines


def render() -> str:
    import typer.main

    from rootsand.cli.commands import app

    root = typer.main.get_command(app)
    head = [f'.TH ROOTSAND 1 "" "rootsand {__version__}" "User Commands"', ".SH NAME",
            "rootsand \\- run a command in a sandbox without sudo", ".SH SYNOPSIS",
            ".B rootsand run", "[\\fIOPTIONS\\fR] [\\-\\-] [\\fICOMMAND\\fR [\\fIARG\\fR...]]", ".br",
            ".B rootsand", "\\fICOMMAND\\fR [\\fIOPTIONS\\fR]", ".SH DESCRIPTION", _paragraphs(root.help),
            ".SH COMMANDS"]
    return "\n".join(head + _commands(root, [])) + "\n" + SECTIONS


if __name__ == "__main__":
    print(render(), end="")
