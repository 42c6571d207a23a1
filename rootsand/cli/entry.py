"""The console script's entry point: a ^C while rootsand's modules load is an exit status, not a traceback.

The script pip writes imports this module, which imports nothing, then calls main(); the modules of the
command line load inside the try below, with the cyclic collector off (see main()).
"""


def main() -> None:
    import gc

    # No cyclic garbage collection while rootsand starts: the start-up makes almost no cycles, and the
    # collector's passes over every module object it imports cost ~5% of `rootsand run -- true`. The
    # launcher freezes what is there before it forks (the children then never write to those pages) and
    # turns collection back on right after (runtime/launcher.py); other commands turn it on in main.py.
    gc.disable()
    try:
        from rootsand.cli.main import main as run
    except KeyboardInterrupt:
        raise SystemExit(128 + 2) from None  # as the shell reports a command killed by SIGINT
    run()
