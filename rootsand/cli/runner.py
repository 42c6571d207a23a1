"""`rootsand run`, from parsed options to an exit status: profile -> spec -> plan -> runtime.

Both front ends (the fast parser in main.py and typer's in commands.py) call run_sandbox(); nothing here
knows about either.
"""

import os
import sys


def run_sandbox(options) -> int:
    from rootsand.errors import stage

    verbose = options.verbose or options.debug
    timed = verbose and not options.dry_run  # -v times the stages of a run; with --dry-run it lists the plan
    the_plan = make_plan(options, timed)
    if options.dry_run:
        import json

        from rootsand.config import plan
        from rootsand.runtime import hostprep

        the_plan = hostprep.resolve(the_plan)  # as the launcher does it before it builds anything
        print(json.dumps(the_plan.to_json(), indent=2))
        if verbose:
            from rootsand.errors import printable

            print("\n".join(printable(line) for line in plan.describe(the_plan)), file=sys.stderr)
        return 0
    if options.detach:
        from rootsand.runtime import detach

        return detach.run(the_plan, options.json_status, verbose, options.debug)
    from rootsand.runtime import launcher

    code = launcher.run(the_plan, options.json_status, verbose, options.debug)
    if timed:
        stage("cleaned up: rootsand exits")
    return code


def make_plan(options, timed: bool = False):
    """The Plan `rootsand run` with these options would carry out (and `rootsand export` writes out)."""
    from rootsand.config import plan, profile, spec
    from rootsand.errors import stage
    from rootsand.guard import hostpaths

    if timed:
        stage("command line read")  # the interpreter's own start is before rootsand's first line: not in here
    env = dict(os.environ)
    homes = hostpaths.home_dirs(env, os.getuid())  # computed once: $HOME and the passwd entry's
    cwd, notes = hostpaths.current_directory(env, homes)
    loaded = profile.load(options.profile, profile.Variables.from_host(cwd))
    asked = spec.from_profile(loaded, options, env, cwd, os.cpu_count() or 1, homes)
    asked = asked.replace(notes=tuple(notes) + asked.notes)
    if timed:
        stage(f"profile {asked.profile} read")
    from rootsand.config import host

    facts = host.facts(asked.net_mode)
    if asked.pod:  # the pod must exist; its hosts file is every member's /etc/hosts
        from rootsand.net import pod

        facts = facts.replace(pod_hosts=pod.pod_path(pod.find(asked.pod)["name"], ".hosts"))
    if timed:
        stage("host facts read")
    the_plan = plan.plan(asked, facts)
    if timed:
        stage("plan made")
    return the_plan
