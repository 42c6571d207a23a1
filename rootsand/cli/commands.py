"""The typer application: help, usage errors and every command but the fast path of `rootsand run` (cli/main.py)."""

import inspect
from typing import Optional

import typer

from rootsand import __version__
from rootsand.cli.options import COMMAND_HELP, RUN

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run a command in a rootless sandbox: your own root, namespaces, TOML profiles, no sudo.",
)

def _version(value: bool) -> None:
    if value:
        print(f"rootsand {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


def _run(command: Optional[list[str]], **given) -> None:
    """Run COMMAND in a new sandbox and exit with its status."""
    from rootsand.cli.options import RunOptions
    from rootsand.cli.runner import run_sandbox

    raise typer.Exit(run_sandbox(RunOptions(command=command, **given)))


def _run_signature(dests=None, command_help: str | None = COMMAND_HELP, extra=()) -> inspect.Signature:
    """typer reads a command's options from its signature: this one is made from the options table (those of
    `dests` only, when given), with COMMAND as its arguments unless `command_help` is None, and `extra`
    parameters after them."""
    kinds = {"flag": (bool, False), "value": (Optional[str], None), "list": (list[str], [])}
    params = [] if command_help is None else [
        inspect.Parameter("command", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[list[str]],
                          default=typer.Argument(None, help=command_help))]
    for o in RUN:
        if dests is not None and o.dest not in dests:
            continue
        annotation, default = kinds[o.kind]
        default = "default" if o.dest == "profile" else default
        params.append(inspect.Parameter(o.dest, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                        default=typer.Option(default, *o.names, help=o.help)))
    return inspect.Signature(params + list(extra))


_run.__signature__ = _run_signature()
app.command("run", context_settings={"allow_interspersed_args": False})(_run)


export_app = typer.Typer(help="Write the sandbox out for other engines: an OCI bundle, a seccomp profile, a Pod.",
                         no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(export_app, name="export")


def _export_oci(command: Optional[list[str]], **given) -> None:
    """Write an OCI runtime bundle (DIR/config.json and DIR/rootfs) of the plan `run` would carry out: runc and
    crun run it (runc --root DIR2 run --bundle DIR NAME). What the bundle does otherwise is said on stderr."""
    from rootsand.cli.exports import export_oci, run_options

    raise typer.Exit(export_oci(run_options(command, given)))


def _export_kube(command: Optional[list[str]], image: str, **given) -> None:
    """Print a Kubernetes Pod manifest (JSON, which kubectl and YAML readers take) of the plan `run` would carry
    out. What Kubernetes cannot express is said on stderr."""
    from rootsand.cli.exports import export_kube, run_options

    raise typer.Exit(export_kube(run_options(command, given), image))


def _export_seccomp(**given) -> None:
    """Print the profile's seccomp filter as OCI/Docker JSON (podman --security-opt seccomp=FILE, Kubernetes
    seccompProfile Localhost)."""
    from rootsand.cli.exports import export_seccomp, run_options

    raise typer.Exit(export_seccomp(run_options(None, given)))


EXPORTED = [o.dest for o in RUN if o.dest not in ("dry_run", "json_status", "detach")]  # what shapes the plan
_export_oci.__signature__ = _run_signature(
    EXPORTED, "The command and its arguments, then DIR: the bundle's directory (made; must be empty).")
_export_kube.__signature__ = _run_signature(EXPORTED, COMMAND_HELP, [inspect.Parameter(
    "image", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Option(
        "docker.io/library/debian:bookworm-slim", "--image", help="The container image; the host's /usr and /etc "
        "are bound over it as the profile says."))])
# export seccomp: the options the rules depend on
_export_seccomp.__signature__ = _run_signature(("profile", "net", "seccomp", "memory"), None)
export_app.command("oci", context_settings={"allow_interspersed_args": False})(_export_oci)
export_app.command("kube", context_settings={"allow_interspersed_args": False})(_export_kube)
export_app.command("seccomp")(_export_seccomp)


profiles_app = typer.Typer(help="List the profiles, or show one fully resolved.", no_args_is_help=False,
                           add_completion=False, rich_markup_mode=None)
app.add_typer(profiles_app, name="profiles")


@profiles_app.callback(invoke_without_command=True)
def profiles_list(ctx: typer.Context) -> None:
    """List the built-in and your own profiles with their descriptions."""
    if ctx.invoked_subcommand:
        return
    from rootsand.config import profile

    rows = profile.list_profiles()
    width = max((len(name) for name, _, _ in rows), default=0)
    for name, description, origin in rows:
        print(f"{name:<{width}}  {description}" + ("" if origin == "built-in" else f"  [{origin}]"))


@profiles_app.command("show")
def profiles_show(name: str = typer.Argument(..., help="A profile name or a TOML file."),
                  as_template: bool = typer.Option(False, "--template", help=(
                      "Keep ${CWD}, ${HOME} and the other variables as written: a start for a profile of "
                      "your own."))) -> None:
    """Print the profile after extends, variables and defaults, as TOML."""
    from rootsand.config import profile

    if as_template:
        print(profile.template(name), end="")
    else:
        print(profile.to_toml(profile.load(name, profile.Variables.from_host())), end="")


@app.command()
def ps(json_output: bool = typer.Option(False, "--json", help="An array of objects, in machine units."),
       show_all: bool = typer.Option(False, "--all", "-a",
                                     help="Also those starting, and detached ones that ended (until rootsand rm)."),
       quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the names, one a line.")) -> None:
    """List your running sandboxes."""
    from rootsand.ops.ps import print_json, ps_rows, ps_table

    rows = ps_rows(show_all)
    if quiet:
        for row in rows:  # none: no output at all, as `podman ps -q`
            print(row["name"])
    elif json_output:
        print_json(rows)
    else:
        print(ps_table(rows))


@app.command(name="exec", context_settings={"allow_interspersed_args": False})
def exec_command(
    name: str = typer.Argument(..., help="The sandbox's name (rootsand ps)."),
    command: Optional[list[str]] = typer.Argument(None, help=COMMAND_HELP),
    env: list[str] = typer.Option([], "-e", "--env", help="KEY=VALUE added to the sandbox's environment; repeatable."),
    user: Optional[str] = typer.Option(None, "--user", help="root or UID[:GID] (default: as the sandbox's command)."),
    chdir: Optional[str] = typer.Option(None, "--chdir", help="Working directory inside (default: the sandbox's)."),
) -> None:
    """Run COMMAND inside a running sandbox, as its own command runs."""
    from rootsand.ops.exec import exec_in

    raise typer.Exit(exec_in(name, _after_dashes(command), env, user, chdir))


@app.command()
def inspect(name: str = typer.Argument(..., help="The sandbox's name."),
            json_output: bool = typer.Option(False, "--json", help="Everything, as JSON.")) -> None:
    """Show a running sandbox: pids, namespaces, id maps, mounts, network, limits and its plan."""
    from rootsand.ops.inspect import inspect as sandbox_info
    from rootsand.ops.ps import print_json

    info = sandbox_info(name)
    if json_output:
        print_json(info)
        return
    from rootsand.errors import printable

    lines = [f"name: {info['name']}   profile: {info['profile']}   command: {' '.join(info['command'] or [])}",
             "pids: " + ", ".join(f"{k} {v}" for k, v in info["pids"].items()),
             "namespaces: " + ", ".join(f"{k}:[{v}]" for k, v in info["namespaces"].items()),
             "uid map: " + "; ".join(" ".join(map(str, line)) for line in info["uid_map"]),
             " ".join(filter(None, ("network:", info["network"]["mode"], info["network"].get("pod"))))]
    lines += [f"  {i['name']}: {' '.join(i['addresses'])}" for i in info["network"].get("interfaces", [])]
    lines.append("mounts:")
    lines += [f"  {m['destination']:<32} {m['type']:<8} {','.join(m['options'])}" for m in info.get("mounts", [])]
    from rootsand.security.landlockrules import Ruleset, describe

    lines += describe(Ruleset.from_json(info["landlock"]))
    print("\n".join(printable(line) for line in lines))  # mount points and names are the sandbox's to choose


@app.command()
def stop(names: Optional[list[str]] = typer.Argument(None, help="The sandboxes' names."),
         grace: float = typer.Option(10.0, "--time", "-t", help="Seconds between SIGTERM and SIGKILL."),
         stop_all: bool = typer.Option(False, "--all", help="Every running sandbox of yours.")) -> None:
    """Stop sandboxes: SIGTERM to the command, SIGKILL of everything after --time seconds."""
    from rootsand.errors import RootsandError
    from rootsand.ops.ps import ps_rows, stop as stop_sandbox

    targets = [row["name"] for row in ps_rows(True) if row["launcher"]] if stop_all else list(names or [])
    if not targets and not stop_all:
        raise RootsandError("name a sandbox to stop, or --all", hint="'rootsand ps' lists them")
    for target in targets:
        stop_sandbox(target, grace)


@app.command()
def logs(name: str = typer.Argument(..., help="A detached sandbox's name (rootsand ps -a)."),
         follow: bool = typer.Option(False, "--follow", "-f", help="Go on printing until the sandbox ends.")) -> None:
    """Print what a detached sandbox (run -d) and its command wrote."""
    from rootsand.ops.detached import logs as print_logs

    print_logs(name, follow)


@app.command()
def attach(name: str = typer.Argument(..., help="A detached sandbox's name (run -dt: it has a terminal).")) -> None:
    """Take over a detached sandbox's terminal; ctrl-p ctrl-q lets it go, and the sandbox runs on."""
    from rootsand.ops.detached import attach as attach_to

    raise typer.Exit(attach_to(name))


@app.command()
def rm(names: Optional[list[str]] = typer.Argument(None, help="Detached sandboxes' names."),
       remove_all: bool = typer.Option(False, "--all", "-a", help="Every detached sandbox that has ended."),
       force: bool = typer.Option(False, "--force", "-f", help="Stop running ones first (with --all: them too).")
       ) -> None:
    """Remove detached sandboxes that have ended: their records and logs; the names are free again."""
    from rootsand.ops.detached import remove

    for name in remove(list(names or []), remove_all, force):
        print(name)


@app.command()
def cleanup() -> None:
    """Do what killed launchers left undone: their checks, mount points and entries; one line per removal."""
    from rootsand.errors import printable
    from rootsand.guard import leftovers

    from rootsand.net import pod

    for line in leftovers.cleanup(explicit=True) + pod.sweep():
        print(printable(line))


pod_app = typer.Typer(help="Pods: sandboxes on one private network that reach each other by name.",
                      no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(pod_app, name="pod")


@pod_app.command("create")
def pod_create(name: str = typer.Argument(..., help="The pod's name."),
               net: str = typer.Option("none", "--net", help="The pod's way out: none or pasta."),
               publish: list[str] = typer.Option([], "--publish", help="[HOST_IP:]HOST_PORT:PORT (TCP): the "
                                                 "member listening on PORT serves it; repeatable.")) -> None:
    """Make a pod: a user and network namespace with a bridge, which `run --pod NAME` joins."""
    from rootsand.net import pod

    pod.create(name, net, publish)
    print(name)


@pod_app.command("ls")
def pod_ls(json_output: bool = typer.Option(False, "--json", help="An array of objects.")) -> None:
    """List your pods and their members."""
    from rootsand.net import pod
    from rootsand.ops.ps import age, print_json

    found = pod.rows()
    if json_output:
        print_json(found)
        return
    lines = [("NAME", "NET", "SUBNET", "AGE", "MEMBERS")] + [
        (r["name"], r["net"], r["subnet"], age(r["age_seconds"]), ",".join(r["members"]) or "-") for r in found]
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)) + "  " + line[4])


@pod_app.command("inspect")
def pod_inspect(name: str = typer.Argument(..., help="The pod's name.")) -> None:
    """Show a pod: its keeper and holder, network and members (as JSON)."""
    from rootsand.net import pod
    from rootsand.ops.ps import print_json

    print_json(pod.inspect(name))


@pod_app.command("rm")
def pod_rm(names: list[str] = typer.Argument(..., help="The pods' names."),
           force: bool = typer.Option(False, "--force", "-f", help="Stop the pod's members first.")) -> None:
    """Remove pods: their holder and network go; members are an error unless -f stops them."""
    from rootsand.net import pod

    for name in names:
        pod.remove(name, force)


ns_app = typer.Typer(help="Namespaces: list them, compare two processes or sandboxes, watch them come and go.",
                     no_args_is_help=True, add_completion=False, rich_markup_mode=None)
app.add_typer(ns_app, name="ns")


@ns_app.command("list")
def ns_list(json_output: bool = typer.Option(False, "--json", "-J", help="As JSON."),
            ns_type: Optional[str] = typer.Option(None, "--type", "-t", help="Only this type (net, pid, user, ...)."),
            pid: Optional[int] = typer.Option(None, "--task", "-p", help="Only the namespaces of this process."),
            tree: bool = typer.Option(False, "--tree", help="Nested under their owning user namespace.")) -> None:
    """Every namespace you can see, with its processes, owner and sandbox."""
    from rootsand.ops import nsview

    rows = nsview.scan(ns_type, pid)
    if json_output:
        from rootsand.ops.ps import print_json

        print_json(rows)
    else:
        print(nsview.table(rows, tree))


@ns_app.command("diff")
def ns_diff(a: str = typer.Argument(..., help="A pid or a sandbox name."),
            b: str = typer.Argument(..., help="A pid or a sandbox name.")) -> None:
    """For each namespace type: shared or different between A and B."""
    from rootsand.ops import nsview

    rows = nsview.ns_diff(a, b)
    for link, verdict, ia, ib in rows:
        print(f"{link:<18} {verdict:<21} {ia or '-':<20} {ib or '-'}")
    shared = sum(1 for r in rows if r[1] == "shared")
    different = sum(1 for r in rows if r[1] == "different")
    print(f"shared: {shared}  different: {different}")


@ns_app.command("monitor")
def ns_monitor(json_output: bool = typer.Option(False, "--json", help="One JSON object a line.")) -> None:
    """Print each namespace that appears or disappears, until interrupted."""
    from rootsand.ops import nsview

    nsview.monitor(json_output)


@app.command()
def completion(shell: str = typer.Argument("bash", help="bash, zsh or fish.")) -> None:
    """Print the shell completion script: eval "$(rootsand completion bash)" in ~/.bashrc."""
    from rootsand.cli.completion import script

    print(script(shell))


@app.command(context_settings={"allow_interspersed_args": False})
def unshare(command: Optional[list[str]] = typer.Argument(None, help="The command and its arguments (default: $SHELL).")
            ) -> None:
    """Run COMMAND as root of a user namespace with the sandboxes' id map, and nothing else isolated."""
    from rootsand.runtime.unshare import run as run_unshared

    raise typer.Exit(run_unshared(_after_dashes(command)))


def _after_dashes(command: Optional[list[str]]) -> list[str]:
    """NAME -- COMMAND: once the first argument is taken, click keeps a "--" among the rest."""
    command = list(command or [])
    return command[1:] if command[:1] == ["--"] else command


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                                "allow_interspersed_args": False}, add_help_option=False)
def bwrap(ctx: typer.Context) -> None:
    """Run a bubblewrap (bwrap) command line with rootsand's runtime; bwrap's options (rootsand bwrap --help).
    Also installed as rootsand-bwrap."""
    from rootsand.cli.bwrap import run  # (cli/main.py sends `rootsand bwrap` there before typer loads)

    raise typer.Exit(run(list(ctx.args), "rootsand bwrap"))


@app.command()
def doctor(json_output: bool = typer.Option(False, "--json", help="Print the checks as JSON.")) -> None:
    """Check what this host lets rootsand do, and how to fix what it lacks. Exit 1 if something is missing."""
    from rootsand.ops import doctor as checks

    results = checks.checks()
    if json_output:
        import json

        print(json.dumps(checks.as_json(results), indent=2))
    else:
        print(checks.report(results))
    raise typer.Exit(1 if any(c.status == checks.MISSING for c in results) else 0)
