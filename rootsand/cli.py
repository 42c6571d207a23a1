"""The command line: typer options in, a SandboxSpec out, exit statuses back. No sandbox logic lives here."""

import os
import sys
from typing import Optional

import typer

from rootsand import __version__
from rootsand.errors import ExitCode, RootsandError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run a command in a rootless sandbox: your own root, namespaces, TOML profiles, no sudo.",
)

# Settings the debug path needs before typer has parsed anything (the error handler in main()).
_debug = "--debug" in sys.argv[1:sys.argv.index("--")] if "--" in sys.argv else "--debug" in sys.argv


def _version(value: bool) -> None:
    if value:
        print(f"rootsand {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    pass


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    command: Optional[list[str]] = typer.Argument(None, help="The command and its arguments (default: /bin/sh)."),
    hostname: str = typer.Option("rootsand", "--hostname", help="Host name inside."),
    chdir: Optional[str] = typer.Option(None, "--chdir", help="Working directory inside (default: the current one)."),
    env: list[str] = typer.Option([], "-e", "--env", help="KEY=VALUE set in the command's environment; repeatable."),
    user: str = typer.Option("root", "--user", help="root (uid 0, mapped to you), keep-id (your own ids) or UID[:GID]."),
    timeout: Optional[str] = typer.Option(None, "--timeout", help="Wall-clock limit (90, 30s, 10m, 2h); exit 124."),
    name: Optional[str] = typer.Option(None, "--name", help="A name for the sandbox (generated when absent)."),
    json_status: Optional[str] = typer.Option(None, "--json-status", help="Write JSON lines about the sandbox here."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Print the setup stages and their timing."),
    debug: bool = typer.Option(False, "--debug", help="As --verbose, and a traceback on internal errors."),
) -> None:
    """Run COMMAND in a new sandbox and exit with its status."""
    from rootsand import launcher, spec

    sandbox = spec.SandboxSpec(
        command=command or ["/bin/sh"],
        user=spec.parse_user(user),
        hostname=spec.validate_hostname(hostname),
        chdir=chdir or _cwd(),
        env=spec.build_env(dict(os.environ), assignments=dict(spec.parse_env_assignment(e) for e in env)),
        timeout=spec.parse_duration(timeout) if timeout is not None else None,
        name=spec.validate_name(name) if name else f"rootsand-{os.getpid()}",
        json_status=json_status,
        verbose=verbose or debug,
        debug=debug,
    )
    raise typer.Exit(launcher.run(sandbox))


def _cwd() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        raise RootsandError("the current directory no longer exists", hint="cd somewhere else or pass --chdir")


def main() -> None:
    try:
        code = app(standalone_mode=False, prog_name="rootsand")
    except RootsandError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        code = e.code
    except typer.Exit as e:
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt):
        code = 128 + 2
    except typer.TyperException as e:  # click's usage errors, vendored by typer
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `rootsand` or `rootsand profiles`: help, as asked
            print(e.format_message())
            code = ExitCode.OK
        else:
            print(f"rootsand: error: {e.format_message()}", file=sys.stderr)
            where = f"rootsand {ctx.command.name} --help" if ctx and ctx.command and ctx.parent else "rootsand --help"
            print(f"rootsand: hint: see '{where}'", file=sys.stderr)
            code = ExitCode.FAILURE
    except Exception as e:  # noqa: BLE001 - never a traceback unless asked for
        if _debug:
            raise
        print(f"rootsand: error: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print("rootsand: hint: run again with --debug for a traceback", file=sys.stderr)
        code = ExitCode.FAILURE
    sys.exit(code if isinstance(code, int) else 0)
