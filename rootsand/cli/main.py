"""The command line's entry point: parse, build the spec, run, map every failure to an exit status.

No sandbox logic lives here, and typer is imported only when the fast path below cannot parse the
arguments (help, usage errors, other commands).
"""

import gc
import os
import sys

from rootsand.errors import ExitCode, RootsandError, printable, say

from rootsand.cli.options import RUN_FLAGS, RUN_LISTS, RUN_VALUES, RunOptions

def parse_run_fast(args: list[str]):
    """RunOptions for `rootsand run ARGS`, or None when typer should parse them."""
    options = RunOptions()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if name in RUN_FLAGS and not eq:
            setattr(options, RUN_FLAGS[name], True)
        elif name in RUN_VALUES or name in RUN_LISTS:
            if not eq:
                if i + 1 >= len(args):
                    return None
                i += 1
                value = args[i]
            if name in RUN_VALUES:
                setattr(options, RUN_VALUES[name], value)
            else:
                getattr(options, RUN_LISTS[name]).append(value)
        else:
            return None
        i += 1
    options.command = args[i:]
    return options


def main() -> None:
    options = None
    if sys.argv[1:2] == ["bwrap"]:  # bubblewrap's command line, parsed by its own rules (cli/bwrap.py)
        from rootsand.cli.bwrap import main as bwrap_main

        bwrap_main(sys.argv[2:])
    try:
        # One parser decides what is rootsand's: a --debug after the command is the command's.
        options = parse_run_fast(sys.argv[2:]) if sys.argv[1:2] == ["run"] else None
        if options is not None:
            from rootsand.cli.runner import run_sandbox

            code = run_sandbox(options)
        else:
            gc.enable()  # the other commands (ns monitor runs for long) collect as usual
            code = _typer_main()
    except RootsandError as e:
        for line in e.lines():
            say(line)
        code = e.code
    except KeyboardInterrupt:
        code = 128 + 2
    except Exception as e:  # noqa: BLE001 - never a traceback unless asked for
        if options is not None and options.debug:
            raise
        print(f"rootsand: error: internal error: {type(e).__name__}: {printable(str(e))}", file=sys.stderr)
        print("rootsand: hint: run again with --debug for a traceback", file=sys.stderr)
        code = ExitCode.FAILURE
    code = code if isinstance(code, int) else 0
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        os._exit(code)  # a closed or stuck stdout must not turn the status into Python's 120
    sys.exit(code)


def _typer_main() -> int:
    import typer

    from rootsand.cli.commands import app

    try:
        code = app(standalone_mode=False, prog_name="rootsand")
    except typer.Exit as e:
        code = e.exit_code
    except typer.Abort:
        code = 128 + 2
    except typer.TyperException as e:  # click's usage errors, vendored by typer
        ctx = getattr(e, "ctx", None)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `rootsand` or `rootsand profiles`: help, as asked
            print(e.format_message())
            code = ExitCode.OK
        else:
            print(f"rootsand: error: {printable(e.format_message())}", file=sys.stderr)
            where = f"rootsand {ctx.command.name} --help" if ctx and ctx.command and ctx.parent else "rootsand --help"
            print(f"rootsand: hint: see '{where}'", file=sys.stderr)
            code = ExitCode.FAILURE
    return code if isinstance(code, int) else 0
