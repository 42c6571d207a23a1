"""The README's first two commands are what a new user pastes: keep them honest."""

import os
import re
import shutil
import subprocess

import pytest

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


def test_after_the_install_line_a_new_login_shell_finds_rootsand(tmp_path):
    """Command 1 links rootsand into ~/.local/bin, which Debian's and Ubuntu's ~/.profile put on PATH when it
    exists: the README's examples say just `rootsand`. Its tail after the pip install, run in a new home with
    a stand-in for the virtual environment's rootsand, then a login shell as a new account has it."""
    with open("/etc/skel/.profile") as f:
        if ".local/bin" not in f.read():
            pytest.skip("this system's /etc/skel/.profile does not add ~/.local/bin to PATH")
    install = first_commands()[0]
    tail = install.split("/bin/pip install -q . && ", 1)[1]
    fake = tmp_path / ".local" / "rootsand" / "bin" / "rootsand"
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "rootsand $*"\n')
    fake.chmod(0o755)
    shutil.copy("/etc/skel/.profile", tmp_path / ".profile")
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    done = subprocess.run(["sh", "-c", tail], env=env, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (0, "rootsand run -- sh -c id; hostname; ls /\n"), done.stderr
    login = subprocess.run(["bash", "-lc", "rootsand --version"], env=env, capture_output=True, text=True)
    assert (login.returncode, login.stdout) == (0, "rootsand --version\n"), login.stderr
    # And the README says what to do where a shell does not look there (root's ~/.profile, the pasting shell).
    with open(README) as f:
        assert "export PATH=~/.local/bin:$PATH" in f.read()
