"""The options of `rootsand run` as the fast parser (main.py) and completion (completion.py) know them; typer's
definitions in commands.py must take the same ones (tests/unit/test_completion.py checks it)."""

# `rootsand run` is parsed in main.py without typer when its options are plain (typer costs ~50 ms to import,
# a third of a sandbox's start). Anything unusual (help, a typo, a missing value) goes to typer, which
# then gives the real help or error. tests/unit/test_cli_fast.py checks both parsers agree.
RUN_FLAGS = {"-v": "verbose", "--verbose": "verbose", "--debug": "debug", "--dry-run": "dry_run",
             "--allow-host-loopback": "allow_host_loopback"}
RUN_VALUES = {"-p": "profile", "--profile": "profile", "--net": "net", "--hostname": "hostname",
              "--chdir": "chdir", "--user": "user", "--timeout": "timeout", "--name": "name",
              "--rootfs": "rootfs", "--json-status": "json_status"}
RUN_LISTS = {"-e": "env", "--env": "env", "--publish": "publish", "--bind": "binds", "--ro-bind": "ro_binds", "--tmpfs": "tmpfs",
             "--overlay": "overlays", "--allow-host": "allow_hosts", "--unprotect": "unprotect"}
