"""The options of `rootsand run`, defined once: the fast parser (main.py), typer's command and help
(commands.py), completion (completion.py) and RunOptions below are all made from RUN.

`rootsand run` is parsed in main.py without typer when its options are plain (typer costs ~50 ms to import,
a third of a sandbox's start). Anything unusual (help, a typo, a missing value) goes to typer, which then
gives the real help or error. tests/unit/test_cli_fast.py checks both parsers agree.
"""

from rootsand.config.netmodes import NET_CHOICES, one_of


class Option:
    """One option: a plain class, as `typing` (NamedTuple) would cost the run path ~5 ms of imports."""

    __slots__ = ("names", "dest", "kind", "help", "values")

    def __init__(self, names: tuple[str, ...], dest: str, kind: str, help: str, values: str = ""):
        self.names = names
        self.dest = dest  # the RunOptions attribute
        self.kind = kind  # "flag", "value" (the last one counts) or "list" (repeatable)
        self.help = help
        self.values = values  # what completion offers after it: "profiles", "net", "user", "landlock", "files" or nothing


RUN = (
    Option(("-p", "--profile"), "profile", "value", "A built-in profile name or a TOML file.", "profiles"),
    Option(("--net",), "net", "value",
           f"Network: {one_of(NET_CHOICES)} (overrides the profile; auto: pasta where installed, else slirp).", "net"),
    Option(("--pod",), "pod", "value", "Run in the pod NAME (rootsand pod create): on its network, its members "
           "reached by name."),
    Option(("--allow-host",), "allow_hosts", "list",
           "HOST[:PORT], *.DOMAIN or an IP the proxy lets through; repeatable; implies --net proxy."),
    Option(("--publish",), "publish", "list", "[HOST_IP:]HOST_PORT:SANDBOX_PORT[/tcp|/udp]; slirp and pasta."),
    Option(("--allow-host-loopback",), "allow_host_loopback", "flag",
           "slirp, pasta: let the sandbox reach the host's 127.0.0.1 as 10.0.2.2."),
    Option(("--bind",), "binds", "list", "SRC[:DST] bound read-write; repeatable.", "files"),
    Option(("--ro-bind",), "ro_binds", "list", "SRC[:DST] bound read-only; repeatable.", "files"),
    Option(("--tmpfs",), "tmpfs", "list", "DST: an empty tmpfs; repeatable.", "files"),
    Option(("--overlay",), "overlays", "list", "SRC[:DST]: a writable view of SRC, changes thrown away.", "files"),
    Option(("--unprotect",), "unprotect", "list",
           "PATH: lift one of the profile's protected paths (security.protect); repeatable.", "files"),
    Option(("--unhide",), "unhide", "list",
           "PATH: show a file the profile hides (security.hide), or all below a directory; or a pattern of the "
           "list, lifted; repeatable.", "files"),
    Option(("--hostname",), "hostname", "value", "Host name inside (default: rootsand)."),
    Option(("--chdir",), "chdir", "value", "Working directory inside (default: the current one).", "files"),
    Option(("--volume",), "volumes", "list",
           "SRC:DST[:ro|rw] as podman's (-v is --verbose here); repeatable.", "files"),
    Option(("--device",), "devices", "list", "SRC[:DST]: a host device (or a directory of them); repeatable.",
           "files"),
    Option(("-e", "--env"), "env", "list",
           "KEY=VALUE set in the command's environment; KEY alone: the host's value; KEY*: all so named."),
    Option(("--env-file",), "env_files", "list", "FILE of -e entries, one a line (# comments); repeatable.",
           "files"),
    Option(("--user",), "user", "value", "root (uid 0, mapped to you), keep-id or UID[:GID].", "user"),
    Option(("--timeout",), "timeout", "value", "Wall-clock limit (90, 30s, 10m, 2h); exit 124."),
    Option(("--memory",), "memory", "value", "Memory limit (512M, 2G; overrides the profile)."),
    Option(("--pids-limit",), "pids", "value", "Most processes at once (overrides the profile)."),
    Option(("--cpus",), "cpus", "value", "Cores' worth of CPU time (1.5; overrides the profile)."),
    Option(("--cap-add",), "cap_add", "list", "A capability the command keeps (CAP_NET_RAW or net_raw; all)."),
    Option(("--cap-drop",), "cap_drop", "list", "A capability of the profile's it loses (all: every one)."),
    Option(("--seccomp",), "seccomp", "value", "default, none, or a rule FILE (overrides the profile).", "files"),
    Option(("--landlock",), "landlock", "value",
           "on, off or scope-only: the Landlock wall (overrides the profile's security.landlock).", "landlock"),
    Option(("--name",), "name", "value", "A name for the sandbox (generated when absent)."),
    Option(("-d", "--detach"), "detach", "flag",
           "Run in the background: print the name once the command runs; output to `rootsand logs`."),
    Option(("-t", "--tty"), "tty", "flag", "Give the command a terminal even when none is at hand (-dt: attachable)."),
    Option(("--rootfs",), "rootfs", "value", "DIR: the root file system instead of the host's.", "files"),
    Option(("--json-status",), "json_status", "value", "Write JSON lines about the sandbox here.", "files"),
    Option(("-v", "--verbose"), "verbose", "flag", "Print the setup stages and their timing."),
    Option(("--debug",), "debug", "flag", "As --verbose, and a traceback on internal errors."),
    Option(("--dry-run",), "dry_run", "flag", "Print the plan as JSON and run nothing (-v: also a listing)."),
)
COMMAND_HELP = "The command and its arguments (default: your $SHELL where the sandbox has it, else /bin/sh)."


def _by_name(kind: str) -> dict[str, str]:
    return {name: o.dest for o in RUN if o.kind == kind for name in o.names}


RUN_FLAGS, RUN_VALUES, RUN_LISTS = _by_name("flag"), _by_name("value"), _by_name("list")


class RunOptions:
    """What the command line of `rootsand run` says; None (or empty) where it leaves the profile's choice.
    The spec stage (config/spec.py) reads it; a front end other than this CLI may build one too."""

    def __init__(self, **values):
        self.command = list(values.pop("command", None) or [])
        for o in RUN:
            given = values.pop(o.dest, None)
            setattr(self, o.dest, list(given or []) if o.kind == "list" else bool(given) if o.kind == "flag"
                    else given)
        if values:
            raise TypeError(f"unknown run options: {', '.join(values)}")
        self.profile = self.profile or "default"

    def __eq__(self, other) -> bool:
        return type(other) is RunOptions and vars(self) == vars(other)

    def __repr__(self) -> str:
        return f"RunOptions({vars(self)!r})"
