"""`rootsand run`, from parsed options to an exit status: profile -> spec -> plan -> runtime.

Both front ends (the fast parser in cli.py and typer's in commands.py) call run_sandbox(); nothing here
knows about either.
"""

import os
import sys


def run_sandbox(options) -> int:
    from rootsand import hostpaths, plan, profile, spec

    env = dict(os.environ)
    homes = hostpaths.home_dirs(env, os.getuid())  # computed once: $HOME and the passwd entry's
    cwd, notes = hostpaths.current_directory(env, homes)
    loaded = profile.load(options.profile, profile.Variables.from_host(cwd))
    asked = spec.from_profile(loaded, options, env, cwd, os.cpu_count() or 1, homes)
    asked = asked.replace(notes=tuple(notes) + asked.notes)
    from rootsand import host

    the_plan = plan.plan(asked, host.facts(asked.net_mode))
    if options.dry_run:
        import json

        print(json.dumps(the_plan.to_json(), indent=2))
        if options.verbose or options.debug:
            from rootsand.errors import printable

            print("\n".join(printable(line) for line in plan.describe(the_plan)), file=sys.stderr)
        return 0
    from rootsand import launcher

    return launcher.run(the_plan, options.json_status, options.verbose or options.debug, options.debug)
