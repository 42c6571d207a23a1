"""Shell completion: commands, options, profile names after --profile, sandbox names for exec, inspect,
stop and ns diff, and the detached ones (ended too) for logs, attach and rm. The scripts ask rootsand only for the dynamic names (`rootsand ps -q`, `rootsand
profiles`), so `rootsand run` itself pays nothing for completion."""

from rootsand.cli.options import RUN
from rootsand.config.netmodes import NET_CHOICES
from rootsand.errors import RootsandError

COMMANDS = "run ps exec inspect stop logs attach rm cleanup pod ns profiles doctor unshare bwrap completion export"
# From the options table, so completion cannot drift from what `run` takes (it had: no --net proxy)
RUN_OPTIONS = " ".join(sorted(name for o in RUN for name in o.names if name.startswith("--")) + ["--help"])
# What bash offers after an option that takes a value, by the table's `values`
BASH_VALUES = {"profiles": '$(rootsand profiles 2>/dev/null | cut -d" " -f1)', "net": " ".join(NET_CHOICES),
               "user": "root keep-id", "landlock": "on off scope-only"}


def _bash_value_cases() -> str:
    cases = []
    for kind in ("profiles", "net", "user", "landlock", "files"):
        names = "|".join(name for o in RUN if o.values == kind for name in o.names)
        words = '-f' if kind == "files" else f'-W "{BASH_VALUES[kind]}"'
        cases.append(f"                {names}) COMPREPLY=($(compgen {words} -- \"$cur\"));;")
    return "\n".join(cases)

BASH = r"""_rootsand() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} cmd=${COMP_WORDS[1]}
    COMPREPLY=()
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "@COMMANDS@ --help --version" -- "$cur")); return
    fi
    case "$cmd" in
        exec|inspect|stop)
            if [ "$COMP_CWORD" -eq 2 ] || [ "$cmd" = stop ]; then
                case "$cur" in -*) COMPREPLY=($(compgen -W "--json --time --all --env --user --chdir --help" -- "$cur"));;
                *) COMPREPLY=($(compgen -W "$(rootsand ps -q 2>/dev/null)" -- "$cur"));; esac
            fi;;
        logs|attach|rm)
            case "$cur" in -*) COMPREPLY=($(compgen -W "--follow --all --force --help" -- "$cur"));;
            *) COMPREPLY=($(compgen -W "$(rootsand ps -a -q 2>/dev/null)" -- "$cur"));; esac;;
        ns)
            if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "list diff monitor" -- "$cur"))
            elif [ "${COMP_WORDS[2]}" = diff ]; then COMPREPLY=($(compgen -W "$(rootsand ps -q 2>/dev/null)" -- "$cur"))
            fi;;
        run)
            case "$prev" in
@VALUE_CASES@
                *) case "$cur" in -*) COMPREPLY=($(compgen -W "@RUN_OPTIONS@" -- "$cur"));;
                   *) COMPREPLY=($(compgen -c -- "$cur"));; esac;;
            esac;;
        profiles)
            if [ "$COMP_CWORD" -eq 2 ]; then COMPREPLY=($(compgen -W "show" -- "$cur"))
            elif [ "${COMP_WORDS[2]}" = show ]; then
                case "$cur" in -*) COMPREPLY=($(compgen -W "--template --help" -- "$cur"));;
                *) COMPREPLY=($(compgen -W "@PROFILES@" -- "$cur"));; esac
            fi;;
        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur"));;
    esac
}
complete -F _rootsand rootsand
"""

FISH = """complete -c rootsand -f
complete -c rootsand -n '__fish_use_subcommand' -a '@COMMANDS@'
complete -c rootsand -n '__fish_seen_subcommand_from exec inspect stop' -a '(rootsand ps -q 2>/dev/null)'
complete -c rootsand -n '__fish_seen_subcommand_from logs attach rm' -a '(rootsand ps -a -q 2>/dev/null)'
complete -c rootsand -n '__fish_seen_subcommand_from ns' -a 'list diff monitor'
complete -c rootsand -n '__fish_seen_subcommand_from run' -l profile -s p -xa '(rootsand profiles 2>/dev/null | string split -f1 " ")'
complete -c rootsand -n '__fish_seen_subcommand_from profiles; and not __fish_seen_subcommand_from show' -a 'show'
complete -c rootsand -n '__fish_seen_subcommand_from show' -a '(rootsand profiles 2>/dev/null | string split -f1 " ")'
complete -c rootsand -n '__fish_seen_subcommand_from show' -l template
complete -c rootsand -n '__fish_seen_subcommand_from run' -l net -xa '@NET_MODES@'
complete -c rootsand -n '__fish_seen_subcommand_from run' -l user -xa 'root keep-id'
"""


def script(shell: str) -> str:
    bash = BASH.replace("@COMMANDS@", COMMANDS).replace("@RUN_OPTIONS@", RUN_OPTIONS).replace(
        "@VALUE_CASES@", _bash_value_cases()).replace("@PROFILES@", BASH_VALUES["profiles"])
    if shell == "bash":
        return bash
    if shell == "zsh":  # zsh runs bash's completion functions through bashcompinit
        return "autoload -U +X bashcompinit && bashcompinit\n" + bash
    if shell == "fish":
        return FISH.replace("@COMMANDS@", COMMANDS).replace("@NET_MODES@", " ".join(NET_CHOICES))
    raise RootsandError(f"no completion for {shell!r}", hint="bash, zsh or fish")
