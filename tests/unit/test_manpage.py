"""rootsand(1) is made from the commands and options --help shows, and man/rootsand.1 is current."""

import os

from rootsand.cli import manpage
from rootsand.cli.options import RUN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_shipped_man_page_is_current():
    with open(os.path.join(REPO, "man", "rootsand.1")) as f:
        assert f.read() == manpage.render(), "man/rootsand.1 is stale: python3 -m rootsand.cli.manpage > man/rootsand.1"


def test_the_man_page_has_every_run_option_and_command():
    text = manpage.render()
    for option in RUN:
        for name in option.names:
            assert name.replace("-", "\\-") in text, name
    for command in ("run", "ps", "exec", "inspect", "stop", "cleanup", "ns monitor", "profiles show", "doctor",
                    "unshare", "completion"):
        assert f".SS rootsand {command}\n" in text, command


def test_pip_installs_it():
    with open(os.path.join(REPO, "pyproject.toml")) as f:
        assert '"share/man/man1" = ["man/rootsand.1"]' in f.read()
