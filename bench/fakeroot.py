#!/usr/bin/env python3
"""Fakeroot benchmark: `rootsand run --profile fakeroot` against Debian's fakeroot doing the same work.

Run as root:   python3 bench/fakeroot.py [--quick] [--rounds N] [--build-rounds N] [--units N | --source DIR]
                                         [--user NAME] [--rootsand PATH] [--json FILE]

Two parts, each timed as the unprivileged user:
  archive  `chown -R 0:0 tree && tar -cf out.tar tree` over a tree of 20,000 small files (200 dirs x 100),
           in `rootsand run --profile fakeroot -- sh -c ...` and in `fakeroot sh -c ...`
  build    `dpkg-buildpackage -us -uc -b` of a package in the fakeroot profile, and with `-rfakeroot`: the
           tests' own package (tests/debsrc.py: files of several owners, a setuid one) with --units C files
           (300 by default: a build of about 10 s, as GNU hello's; 20 with --quick), made with no download;
           or any unpacked Debian source tree with --source DIR (such as `apt-get source hello`'s hello-2.10)

As root it makes a work directory owned by the user, then re-executes itself as the user (runuser -u USER --
/usr/bin/python3 fakeroot.py --inner ..., as startup.py does). The inner process makes the tree once, then
runs each part's two commands in interleaved rounds (A B A B ...) after a warm-up round. Before every run,
untimed, it gives the run fresh input (out.tar removed; a new copy of the source tree) and syncs, so that
one run's write-back does not land in the next. It checks once that both archives list 0/0 as every owner,
and prints JSON; the outer process prints the table and writes bench/results/fakeroot.json. Stdlib only.
"""
import argparse
import glob
import json
import os
import platform
import pwd
import shlex
import shutil
import statistics
import sys
import tarfile
import time

from common import add_user_options, chown_tree, run_as_user, save, timed_rounds, version

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "fakeroot.json")
UNITS, QUICK_UNITS = 300, 20   # the tests' package's extra C files: a build of about 10 s, or a smoke run's
ARCHIVE = "chown -R 0:0 tree && tar -cf out.tar tree"
FILES, QUICK_FILES, FILES_PER_DIR = 20_000, 2_000, 100
WARMUPS = 1
TIMEOUT = {"archive": 600, "build": 1800}   # seconds, per command run
WIDE = 1.25   # p90 / p10 above this: the table says the numbers are noisy
INSTALL = {"fakeroot": "apt-get install fakeroot", "dpkg-buildpackage": "apt-get install dpkg-dev"}


def commands(rootsand):
    """part -> [(name, argv, tools it needs besides rootsand)]; both commands of a part do the same work.
    Both builds run from inside the source tree (rootsand's ../*.deb go through its staging directory)."""
    box = [rootsand, "run", "--profile", "fakeroot", "--"]
    build = ["dpkg-buildpackage", "-us", "-uc", "-b"]
    return {
        "archive": [("rootsand run --profile fakeroot", box + ["sh", "-c", ARCHIVE], ["tar"]),
                    ("fakeroot", ["fakeroot", "sh", "-c", ARCHIVE], ["fakeroot", "tar"])],
        "build": [("rootsand run --profile fakeroot", box + build, ["dpkg-buildpackage"]),
                  ("dpkg-buildpackage -rfakeroot", build + ["-rfakeroot"], ["dpkg-buildpackage", "fakeroot"])],
    }


def measure(part, results, rounds, warmups, prepare, check=None):
    """Interleaved rounds, the first `warmups` not counted. Before each run, prepare(k, i) (k: the command's
    index, i: the round) makes its input and returns the directory to run in; that is not timed. timed_rounds
    has no step between runs, so each run is one round of it (its timing and its reason for a failure).
    check(r), after a command's first run, may return a reason to skip it. Fills in times_ms, runs,
    median_ms, p10_ms, p90_ms, min_ms and max_ms, or `skipped`."""
    for r in results:
        r["times_ms"], r["warmup_ms"] = [], []
    for i in range(warmups + rounds):
        for k, r in enumerate(results):
            if r["skipped"]:
                continue
            try:
                os.chdir(prepare(k, i))
                os.sync()
            except OSError as e:
                r["skipped"] = f"preparing run {i + 1}: {e}"
                continue
            one = {"argv": r["argv"], "skipped": None}
            timed_rounds([one], 1, 0, TIMEOUT[part])
            if one["skipped"]:
                r["skipped"] = f"failed on run {i + 1}: " + one["skipped"].partition(": ")[2]
                continue
            (r["times_ms"] if i >= warmups else r["warmup_ms"]).append(one["median_ms"])
            if i == 0 and check:
                r["skipped"] = check(r)
        label = "warm-up" if i < warmups else f"round {i - warmups + 1}/{rounds}"
        print(f"  {part} {label}: " + ", ".join(
            f"{r['name']} " + ("skipped" if r["skipped"] else f"{(r['times_ms'] or r['warmup_ms'])[-1] / 1e3:.3f} s")
            for r in results), file=sys.stderr)
    for r in results:
        t = sorted(r["times_ms"])
        if r["skipped"] or not t:
            continue
        q = statistics.quantiles(t, n=10, method="inclusive") if len(t) > 1 else [t[0]] * 9
        r.update(runs=len(t), median_ms=round(statistics.median(t), 3), p10_ms=round(q[0], 3),
                 p90_ms=round(q[8], 3), min_ms=t[0], max_ms=t[-1])


def make_tree(work, files):
    """`files` files of a few bytes in work/tree, FILES_PER_DIR to a directory, owned by the caller (the user)."""
    for d in range(files // FILES_PER_DIR):
        sub = os.path.join(work, "tree", f"d{d:03d}")
        os.makedirs(sub)
        for f in range(FILES_PER_DIR):
            with open(os.path.join(sub, f"f{f:03d}"), "w") as out:
                out.write(f"{d} {f}\n")


def archive_owners(r):
    """After a command's first run: record the owners out.tar lists; a reason to skip it unless all are 0/0."""
    try:
        with tarfile.open("out.tar") as tar:
            owners = sorted({f"{m.uid}/{m.gid} {m.uname}/{m.gname}" for m in tar})
    except (OSError, tarfile.TarError) as e:
        return f"out.tar unreadable: {e}"
    r["archive_owners"] = owners
    return None if owners == ["0/0 root/root"] else f"out.tar lists owners {', '.join(owners)}, not only 0/0"


def package_source(path):
    """The unpacked source: PATH itself, or the one directory in it that holds debian/control."""
    candidates = [path] + sorted(glob.glob(os.path.join(path, "*")))
    return next((d for d in candidates if os.path.isfile(os.path.join(d, "debian", "control"))), None)


def inner(args):
    """As the unprivileged user, in the user's work directory: time both parts, print JSON on stdout."""
    work, parts, load = args.work, [], [round(x, 2) for x in os.getloadavg()]
    where = args.source or os.path.join(work, "source")   # without --source, the tests' package, made by outer()
    source = package_source(where)
    for part, cmds in commands(args.rootsand).items():
        t0 = time.perf_counter()
        results = [{"name": name, "argv": argv,
                    "skipped": next((f"{t} not found" + (f" ({INSTALL[t]})" if t in INSTALL else "")
                                     for t in tools if shutil.which(t) is None), None)}
                   for name, argv, tools in cmds]
        entry = {"part": part, "skipped": None, "results": results}
        parts.append(entry)
        print(f"  {part}: " + "; ".join(shlex.join(r["argv"]) for r in results), file=sys.stderr)
        if part == "archive":
            entry.update(files=args.files, rounds=args.rounds, warmups=WARMUPS)
            make_tree(work, args.files)

            def no_archive(k, i):   # the same work every run: tar makes out.tar anew
                if os.path.lexists(os.path.join(work, "out.tar")):
                    os.unlink(os.path.join(work, "out.tar"))
                return work
            measure(part, results, args.rounds, WARMUPS, no_archive, archive_owners)
        else:
            warmups = 0 if args.quick else WARMUPS
            entry.update(source=source or where, rounds=args.build_rounds, warmups=warmups)
            if not args.source:
                entry["units"] = args.units
            if source is None:
                entry["skipped"] = f"no unpacked Debian source tree (debian/control) in {where}"
                continue

            def fresh_copy(k, i):   # work/build-ROUND-COMMAND/NAME-VERSION; dpkg-buildpackage writes ../*.deb
                copy = os.path.join(work, f"build-{i + 1}-{k + 1}", os.path.basename(source))
                shutil.copytree(source, copy, symlinks=True)
                return copy
            measure(part, results, args.build_rounds, warmups, fresh_copy)
        entry["seconds"] = round(time.perf_counter() - t0, 1)

    meta = {
        "user": pwd.getpwuid(os.getuid()).pw_name, "uid": os.getuid(), "order": "interleaved rounds",
        "quick": args.quick, "kernel": platform.release(), "cpus": os.cpu_count(),
        "loadavg_at_start": load, "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "versions": {
            "rootsand": version([args.rootsand, "--version"]),
            "fakeroot": version(["fakeroot", "--version"]),
            "dpkg-buildpackage": version(["dpkg-buildpackage", "--version"]),
            "tar": version(["tar", "--version"]),
            "gcc": version(["gcc", "--version"]),
        },
    }
    json.dump({"meta": meta, "parts": parts}, sys.stdout, indent=2)


def make_work(workdir, user, units=None):
    """The inner process's work directory, owned by USER; run_as_user hands it over as --rootfs. With
    `units`, the tests' package is made in it (work/source), for the inner process's --source."""
    work = os.path.join(workdir, "work")
    os.mkdir(work)
    if units is not None:
        sys.path.insert(0, os.path.join(HERE, "..", "tests"))
        import debsrc

        debsrc.make(os.path.join(work, "source"), units)
    chown_tree(work, user)
    return work, None


def table(data):
    """The results as a markdown table; fills in ratio_to_fakeroot (rootsand's median / fakeroot's)."""
    titles = {"archive": lambda e: f"archive {e['files']:,} files",
              "build": lambda e: f"build {os.path.basename(e['source'])}"
                                 + (f" ({e['units']} C files)" if "units" in e else "")}
    rows, notes = [("part", "command", "runs", "median s", "p10 s", "p90 s", "x fakeroot")], []
    for e in data["parts"]:
        title = titles[e["part"]](e)
        if e["skipped"]:
            rows.append((title, "skipped", "-", "-", "-", "-", "-"))
            notes.append(f"{title}: skipped: {e['skipped']}")
            continue
        res = e["results"]
        base = res[1]["median_ms"] if not res[1]["skipped"] else None
        for r in res:
            if r["skipped"]:
                rows.append((title, r["name"], "skipped", "-", "-", "-", "-"))
                notes.append(f"{title}, {r['name']}: skipped: {r['skipped']}")
                continue
            r["ratio_to_fakeroot"] = round(r["median_ms"] / base, 4) if base else None
            seconds = (f"{r[k] / 1e3:.3f}" for k in ("median_ms", "p10_ms", "p90_ms"))
            rows.append((title, r["name"], str(r["runs"]), *seconds,
                         f"{r['ratio_to_fakeroot']:#.3g}" if base else "n/a"))
            if r["runs"] > 1 and r["p90_ms"] > WIDE * r["p10_ms"]:
                notes.append(f"{title}, {r['name']}: wide spread (p90 is {r['p90_ms'] / r['p10_ms']:.2f} x p10): "
                             "take these numbers as noisy")
        if e["part"] == "archive":
            owners = {r["name"]: r.get("archive_owners") for r in res if "archive_owners" in r}
            if owners:
                notes.append(f"{title}: owners listed in out.tar: "
                             + "; ".join(f"{n}: {', '.join(o)}" for n, o in owners.items()))
        notes.append(f"{title}: {e['warmups']} warm-up + {e['rounds']} interleaved rounds took {e['seconds']:.0f} s")
    w = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(f"{c:<{w[i]}}" if i < 2 else f"{c:>{w[i]}}" for i, c in enumerate(row)) + " |"
             for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w[i] if i < 2 else "-" * (w[i] - 1) + ":" for i in range(len(w))) + " |")
    return "\n".join(lines + [""] + notes)


def outer(args):
    print(f"fakeroot.py: as {args.user}: archive of {args.files:,} files, {WARMUPS} warm-up + {args.rounds} "
          f"rounds; package build of {args.source or f'the tests package with {args.units} C files'}, "
          f"{0 if args.quick else WARMUPS} warm-up + {args.build_rounds} rounds", file=sys.stderr)
    # Without --source the tests' package is made in the work directory (work/source), where the user reads it.
    inner_args = ["--rounds", str(args.rounds), "--build-rounds", str(args.build_rounds), "--units", str(args.units)]
    units = None if args.source else args.units
    data = run_as_user(os.path.abspath(__file__), args, lambda workdir, user: make_work(workdir, user, units),
                       inner_args + (["--quick"] if args.quick else []) + (["--source", args.source] if args.source else []))
    print(table(data))  # also fills in ratio_to_fakeroot
    save(args.json, data)


def main():
    p = argparse.ArgumentParser(description="rootsand's fakeroot profile vs Debian's fakeroot: chown + tar of "
                                            "a tree of small files, and dpkg-buildpackage of a package.")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK_FILES:,} files, and 1 build each without a warm-up build")
    p.add_argument("--rounds", type=int, default=10, help="timed rounds of the archive (default 10)")
    p.add_argument("--build-rounds", type=int, help="timed rounds of the build (default 3, 1 with --quick)")
    p.add_argument("--units", type=int, help=f"C files of the tests' package, the one built by default "
                                             f"(default {UNITS}, {QUICK_UNITS} with --quick)")
    p.add_argument("--source", help="build this unpacked Debian source tree instead (e.g. apt-get source hello's)")
    p.add_argument("--json", default=RESULTS, help=f"where to write the results (default {os.path.relpath(RESULTS)})")
    add_user_options(p)
    p.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rootfs", dest="work", help=argparse.SUPPRESS)   # make_work's directory, from run_as_user
    args = p.parse_args()
    if args.build_rounds is None:
        args.build_rounds = 1 if args.quick else 3
    if args.rounds < 1 or args.build_rounds < 1:
        p.error("--rounds and --build-rounds must be at least 1")
    args.files = QUICK_FILES if args.quick else FILES
    if args.units is None:
        args.units = QUICK_UNITS if args.quick else UNITS
    args.source = args.source and os.path.abspath(args.source)
    args.json = os.path.abspath(args.json)
    inner(args) if args.inner else outer(args)


if __name__ == "__main__":
    main()
