"""The README's first two commands are what a new user pastes: keep them honest."""

import os
import re
import subprocess

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def first_commands() -> list[str]:
    with open(README) as f:
        text = f.read()
    block = re.search(r"```sh\n(.*?)```", text, re.DOTALL)
    return block.group(1).strip().splitlines()


def test_the_first_commands_are_valid_shell():
    for line in first_commands()[:2]:
        done = subprocess.run(["sh", "-n", "-c", line], capture_output=True, text=True)
        assert done.returncode == 0, (line, done.stderr)


def test_they_need_no_sudo_as_root_and_update_the_package_lists_first():
    install, tests = first_commands()[:2]
    for line in (install, tests):
        assert not re.search(r"(^|[;&|]\s*)sudo\s", line), line  # a bare sudo fails where there is none
    assert install.index("apt-get update") < install.index("apt-get install")
    # As root without sudo, `$(command -v sudo)` is empty: what runs is the command itself.
    expanded = subprocess.run(["sh", "-c", 'PATH=/nonexistent; echo "$(command -v sudo) tests/run.sh"'],
                              capture_output=True, text=True).stdout
    assert expanded.strip() == "tests/run.sh" and tests == "$(command -v sudo) tests/run.sh"


def test_the_install_line_installs_what_rootsand_needs():
    install = first_commands()[0]
    for package in ("uidmap", "slirp4netns", "fuse-overlayfs", "libseccomp2", "python3-venv"):
        assert package in install
    assert "rootsand run --" in install
