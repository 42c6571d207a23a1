"""Start-up is a feature: what `rootsand run -- true` imports, in the launcher and in the sandbox's own
processes (-X importtime reaches them all through stderr). A test of *what* is imported, never of time."""

import subprocess
import sys

from conftest import rootsand_argv

HEAVY = ("typer", "click", "pyroute2", "dataclasses", "subprocess", "shutil", "threading", "ctypes.util",
         "traceback", "tempfile", "ipaddress", "importlib.resources",
         "tomllib", "typing", "datetime")  # tomllib: the built-in profiles are shipped parsed


def imported(args, cwd) -> set[str]:
    exe = rootsand_argv()
    argv = [sys.executable, "-X", "importtime", *(exe if exe[0] != sys.executable else exe[1:]), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.split("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")
            and "[us]" not in line}


def test_run_true_imports_nothing_heavy(tmp_path):
    modules = imported(["run", "--", "true"], tmp_path)
    assert "rootsand.runtime.launcher" in modules and "rootsand.security.seccomp.compile" in modules  # it ran
    assert sorted(set(HEAVY) & modules) == []


def test_no_seccomp_library_where_no_filter_is_loaded(tmp_path):
    profile = tmp_path.parent / f"{tmp_path.name}-none.toml"
    profile.write_text('extends = "default"\n[security]\nseccomp = "none"\n')
    modules = imported(["run", "-p", str(profile), "--", "true"], tmp_path)
    assert "rootsand.runtime.launcher" in modules
    assert "pyseccomp" not in modules and "ctypes.util" not in modules
    assert "tomllib" in modules  # a profile of the user's own is parsed as it is written
