"""The console script's entry point: a ^C while rootsand's modules load is an exit status, not a traceback.

The script pip writes imports this module, which imports nothing, then calls main(); the modules of the
command line load inside the try below.
"""


def main() -> None:
    try:
        from rootsand.cli.main import main as run
    except KeyboardInterrupt:
        raise SystemExit(128 + 2) from None  # as the shell reports a command killed by SIGINT
    run()
