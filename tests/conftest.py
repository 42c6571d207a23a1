"""Shared test helpers: run the real `rootsand` command the way a user does, and report host gaps.

Integration tests need an unprivileged user with subordinate ranges (tests/run.sh makes one). Under
CI=true a skipped integration test counts as a failure: CI must prove every behaviour, not skip it.
"""

import os
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def rootsand_argv() -> list[str]:
    exe = shutil.which("rootsand", path=os.path.dirname(sys.executable)) or shutil.which("rootsand")
    return [exe] if exe else [sys.executable, "-m", "rootsand"]


def run(args, *, check_rc=None, timeout=60, **kwargs) -> subprocess.CompletedProcess:
    """Run `rootsand ARGS...` and capture its output as text."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    done = subprocess.run(rootsand_argv() + list(args), capture_output=True, text=True, timeout=timeout, **kwargs)
    if check_rc is not None:
        assert done.returncode == check_rc, f"exit {done.returncode}, stdout={done.stdout!r} stderr={done.stderr!r}"
    return done


def sandbox(*command, opts=(), **kwargs) -> subprocess.CompletedProcess:
    """`rootsand run [OPTS] -- COMMAND` with the default expectations."""
    return run(["run", *opts, "--", *command], **kwargs)


def host_gaps() -> list[str]:
    """Host features the integration tests need and this machine lacks (as the current user)."""
    from rootsand import host

    gaps = []
    if os.geteuid() == 0:
        gaps.append("running as root: the integration tests must run as an unprivileged user (tests/run.sh)")
    for helper in ("newuidmap", "newgidmap"):
        path = host.find_helper(helper)
        if not path:
            gaps.append(f"{helper} missing (package uidmap)")
        elif not host.is_privileged_helper(path):
            gaps.append(f"{path} is neither setuid root nor has file capabilities")
    for helper in ("slirp4netns", "fuse-overlayfs"):
        if not host.find_helper(helper):
            gaps.append(f"{helper} missing (package {helper})")
    for dev in ("/dev/net/tun", "/dev/fuse"):
        if not os.access(dev, os.R_OK | os.W_OK):
            gaps.append(f"{dev} not usable by this user")
    if host.read_sysctl("/proc/sys/user/max_user_namespaces") == "0":
        gaps.append("user namespaces disabled (user.max_user_namespaces = 0)")
    name = host.user_name(os.getuid())
    from rootsand import idmap

    if os.geteuid() != 0 and not idmap.read_subid("/etc/subuid", name, os.getuid()):
        gaps.append(f"no /etc/subuid range for {name}")
    return gaps


def pytest_report_header(config):
    gaps = host_gaps()
    if not gaps:
        return "rootsand host: every feature the tests need is here"
    return ["rootsand host: missing features:"] + [f"  - {g}" for g in gaps]


def pytest_collection_modifyitems(config, items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        if f"{os.sep}root{os.sep}" in path:
            item.add_marker(pytest.mark.root)


def pytest_runtest_setup(item):
    if item.get_closest_marker("integration") and os.geteuid() == 0:
        pytest.skip("integration tests run as an unprivileged user: use tests/run.sh")
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.skip("needs real root: tests/run.sh runs these as root")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marked = item.get_closest_marker("integration") or item.get_closest_marker("root")
    if report.skipped and marked and os.environ.get("CI") == "true":
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"
