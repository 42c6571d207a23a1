"""Package builds that lose nothing (issue 20): dpkg-buildpackage from inside the source tree leaves its
products in the host's parent directory, the user's; what else a command writes beside its directory is
named and discarded, or refused; the products at the top of the start directory are the user's; no hint
after a failure it does not explain. A tiny Debian source package made here, real dpkg-dev and debhelper."""

import json
import os
import re
import stat
import subprocess

import pytest

from conftest import kill_once_ready, run, sandbox
from test_packages import subid_start

RULES = """#!/usr/bin/make -f
%:
\tdh $@

override_dh_auto_install:
\tinstall -D -m 0755 tiny debian/tiny/usr/bin/tiny
\tinstall -d debian/tiny/var/lib/tiny
\tchown 33:33 debian/tiny/var/lib/tiny

override_dh_fixperms:
\tdh_fixperms -Xvar/lib/tiny
"""


def tiny_tree(where, build_depends: str = "debhelper-compat (= 13)") -> str:
    """A native Debian source package, tiny-1.0, in `where`: one script and a directory of www-data's."""
    tree = where / "tiny-1.0"
    (tree / "debian" / "source").mkdir(parents=True)
    (tree / "tiny").write_text("#!/bin/sh\necho tiny\n")
    (tree / "debian" / "control").write_text(
        # Rules-Requires-Root: dpkg 1.22.13 (Debian 13) defaults to "no", and then runs debian/rules binary
        # without fakeroot even with -rfakeroot: the chown in it fails on the host
        f"Source: tiny\nSection: misc\nPriority: optional\nMaintainer: T <t@example.org>\nBuild-Depends: {build_depends}\n"
        "Rules-Requires-Root: binary-targets\n"
        "Standards-Version: 4.6.2\n\nPackage: tiny\nArchitecture: all\nDescription: tiny\n a test package\n")
    (tree / "debian" / "changelog").write_text(
        "tiny (1.0-1) unstable; urgency=low\n\n  * Initial.\n\n -- T <t@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n")
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (tree / "debian" / "rules").write_text(RULES)
    os.chmod(tree / "debian" / "rules", 0o755)
    return str(tree)


@pytest.fixture
def where(tmp_path):
    """tmp_path, emptied at the end through `rootsand unshare` (the builds leave subordinate ids' files)."""
    yield tmp_path
    for name in os.listdir(tmp_path):
        run(["unshare", "--", "rm", "-rf", str(tmp_path / name)], check_rc=0)


def products(directory) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.endswith((".deb", ".changes", ".buildinfo")))


def deb_listing(deb: str) -> list[tuple]:
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    return [(f[0], f[1], " ".join(f[5:])) for f in (line.split() for line in out.splitlines())]


def test_a_package_built_from_inside_its_tree_lands_beside_it_and_is_yours(where):
    (where / "ours").mkdir()
    (where / "theirs").mkdir()
    ours, theirs = tiny_tree(where / "ours"), tiny_tree(where / "theirs")
    r = sandbox("dpkg-buildpackage", "-us", "-uc", "-b", opts=["--profile", "fakeroot"], cwd=ours, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert not [line for line in r.stderr.splitlines() if line.startswith("rootsand:")], r.stderr
    host = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b", "-rfakeroot"], cwd=theirs, capture_output=True,
                          text=True, timeout=300)
    assert host.returncode == 0, host.stderr[-2000:]
    names = products(where / "ours")
    assert names == products(where / "theirs") and len(names) == 3, names  # .deb, .changes, .buildinfo
    assert sorted(os.listdir(where / "ours")) == sorted(names + ["tiny-1.0"])  # the staging directory is gone
    for name in names:
        st = os.stat(where / "ours" / name)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (os.getuid(), os.getgid(), 0o644), name
    deb = next(n for n in names if n.endswith(".deb"))
    assert deb_listing(str(where / "ours" / deb)) == deb_listing(str(where / "theirs" / deb))
    assert ("drwxr-xr-x", "www-data/www-data", "./var/lib/tiny/") in deb_listing(str(where / "ours" / deb))
    assert (where / "ours" / deb).read_bytes() == (where / "theirs" / deb).read_bytes()
    # The tree keeps the owners the build gave it
    assert os.stat(os.path.join(ours, "debian", "tiny", "var", "lib", "tiny")).st_uid == subid_start() + 33


def test_products_of_a_build_started_from_the_parent_are_yours_and_one_command_removes_the_tree(where):
    tree = tiny_tree(where)
    r = sandbox("dpkg-buildpackage", "-us", "-uc", "-b", opts=["--profile", "fakeroot", "--chdir", "tiny-1.0"],
                cwd=where, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    names = products(where)
    assert len(names) == 3 and all(os.stat(where / n).st_uid == os.getuid() for n in names), names
    with open(where / next(n for n in names if n.endswith(".changes")), "a") as f:
        f.write("\n")  # the user's to change (re-sign, append)
    built = os.path.join(tree, "debian", "tiny", "var", "lib", "tiny")
    assert os.stat(built).st_uid == subid_start() + 33
    plain = subprocess.run(["rm", "-rf", tree], capture_output=True, text=True)
    assert plain.returncode != 0 and os.path.exists(built)
    run(["unshare", "--", "rm", "-rf", tree], check_rc=0)
    assert not os.path.exists(tree)


ATTACK = """
set -e
echo notes > ../notes.txt
mkdir -p ../d/e && echo x > ../d/e/f && chown -R 33:33 ../d && chmod 000 ../d/e
ln -s /etc/passwd ../link_1_all.deb
mkfifo ../fifo_1_all.deb
printf x > '../two
lines_1_all.deb'
echo h > ../h0.txt && ln ../h0.txt ../hard_1_all.deb
truncate -s 20G ../huge.iso
echo "run_command('sh', '-c', 'id')" > ../meson.build
echo "import os" > ../x.tar.pth
echo ok > ../ok_1_all.deb
cp /bin/true ../su_1_all.deb && chmod 4755 ../su_1_all.deb
echo new > ../replace_1_all.deb
echo d > ../isdir_1_all.deb
"""


def test_what_is_written_beside_the_tree_is_carried_when_a_product_and_else_named_and_discarded(where):
    """Only names as dpkg makes them are carried (attack 6, s04: *.build took meson.build, *.tar.* x.tar.pth,
    which Python runs), regular files of one link; all else is discarded and named."""
    from rootsand.config import profile

    patterns = profile.load("fakeroot", profile.Variables.from_host()).parent_products
    tree = tiny_tree(where)
    (where / "replace_1_all.deb").write_text("old\n")
    (where / "isdir_1_all.deb").mkdir()
    (where / "meson.build").write_text("project('mine')\n")
    r = sandbox("sh", "-c", ATTACK, opts=["--profile", "fakeroot"], cwd=tree, check_rc=0)
    assert sorted(os.listdir(where)) == ["isdir_1_all.deb", "meson.build", "ok_1_all.deb", "replace_1_all.deb",
                                         "su_1_all.deb", "tiny-1.0"]
    assert (where / "ok_1_all.deb").read_text() == "ok\n" and (where / "replace_1_all.deb").read_text() == "new\n"
    assert (where / "meson.build").read_text() == "project('mine')\n"
    for name in ("ok_1_all.deb", "replace_1_all.deb", "su_1_all.deb"):
        st = os.stat(where / name)
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()) and not st.st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert os.listdir(where / "isdir_1_all.deb") == []
    lines = [line for line in r.stderr.splitlines() if line.startswith("rootsand:")]
    assert len(lines) == 2, r.stderr
    assert lines[0] == (f"rootsand: warning: {where}/isdir_1_all.deb is not a regular file: not replaced by the "
                        "isdir_1_all.deb the command wrote, which is discarded")
    prefix = (f"rootsand: warning: discarded what the command wrote beside the current directory, in {where} (only "
              f"files named {' '.join(patterns)} are kept there): ")
    assert lines[1].startswith(prefix)
    assert sorted(lines[1][len(prefix):].split(", ")) == sorted(
        ["notes.txt", "d/", "link_1_all.deb", "fifo_1_all.deb", "two\\x0alines_1_all.deb", "h0.txt", "hard_1_all.deb",
         "huge.iso", "meson.build", "x.tar.pth"])


def test_the_way_to_the_current_directory_is_read_only_where_a_write_would_vanish(tmp_path):
    """The default profile: the directories on the way to the current directory are made up in the tmpfs of
    $HOME (or /tmp); a write there fails instead of vanishing. $HOME itself stays the documented scratch."""
    home = tmp_path / "home"
    tree = home / "src" / "tree"
    tree.mkdir(parents=True)
    script = ("import os\n"
              "for path in ('../f', '../../f', os.path.expanduser('~/scratch/f')):\n"
              "    try:\n"
              "        os.makedirs(os.path.dirname(path), exist_ok=True)\n"
              "        open(path, 'w').close()\n"
              "        print(path, 'written')\n"
              "    except OSError as e:\n"
              "        print(path, e.errno)\n")
    r = sandbox("python3", "-c", script, cwd=tree, env=dict(os.environ, HOME=str(home)), check_rc=0)
    assert r.stdout.splitlines() == ["../f 30", "../../f written", f"{home}/scratch/f written"]  # 30: EROFS
    assert sorted(os.listdir(home)) == ["src"] and os.listdir(home / "src") == ["tree"]


def test_the_top_of_the_start_directory_is_yours_below_it_the_owners_stay(where):
    script = "echo x > made && echo g > given && chown 33:33 given && mkdir sub && echo y > sub/deep"
    sandbox("sh", "-c", script, opts=["--profile", "fakeroot"], cwd=where, check_rc=0)
    assert os.stat(where / "made").st_uid == os.getuid()  # made by root inside, a subordinate id
    assert os.stat(where / "given").st_uid == subid_start() + 33  # given to another id on purpose
    assert os.stat(where / "sub" / "deep").st_uid == subid_start()
    assert os.stat(where / "sub").st_uid == subid_start()


def test_no_hint_after_a_failure_it_does_not_explain(where):
    r = sandbox("false", opts=["--profile", "fakeroot"], cwd=where, check_rc=1)
    assert r.stderr == ""
    tree = tiny_tree(where, build_depends="rootsand-no-such-build-dependency")
    r = sandbox("dpkg-buildpackage", "-us", "-uc", "-b", opts=["--profile", "fakeroot"], cwd=tree, timeout=300)
    assert r.returncode not in (0, 125), r.stderr
    assert "rootsand-no-such-build-dependency" in r.stderr  # dpkg-checkbuilddeps says what is missing
    assert not [line for line in r.stderr.splitlines() if line.startswith("rootsand:")], r.stderr
    assert sorted(os.listdir(where)) == ["tiny-1.0"]


def test_the_staging_directory_is_in_the_plan(where):
    tree = tiny_tree(where)
    r = sandbox("true", opts=["--profile", "fakeroot", "--dry-run", "--name", "staged"], cwd=tree, check_rc=0)
    plan = json.loads(r.stdout)
    staging = plan["resolved"]["handover"]["staging"]
    # Beside the tree, with random letters no one can guess or take first (attack 6, s01, s02, s05)
    assert re.fullmatch(re.escape(f"{where}/.rootsand-staging.staged.") + "[0-9a-f]{16}", staging), staging
    assert plan["resolved"]["handover"]["top"] == tree
    step = plan["resolved"]["mounts"][plan["handover"]["mount"]]
    assert (step["type"], step["src"], step["dst"]) == ("bind", staging, str(where))
    assert sorted(os.listdir(where)) == ["tiny-1.0"]  # --dry-run makes nothing


def test_a_killed_launchers_staging_directory_is_removed_by_the_next_sweep(where):
    tree = tiny_tree(where)
    kill_once_ready("echo half > ../half.deb && mkdir ../locked && chmod 000 ../locked && echo ready && "
                    "exec sleep 600", tree, ["--profile", "fakeroot"])
    staging = [n for n in os.listdir(where) if n.startswith(".rootsand-staging.")]
    assert len(staging) == 1  # nobody was there to hand it over
    r = run(["cleanup"], check_rc=0)
    assert sorted(os.listdir(where)) == ["tiny-1.0"]
    line = next(line for line in r.stderr.splitlines() if "staging directory" in line)
    assert line.startswith(f"rootsand: warning: removed {where}/{staging[0]}, the staging directory of a sandbox whose "
                           "launcher was killed: discarded ")
    assert sorted(line.split(": discarded ")[1].split(", ")) == ["half.deb", "locked"]


def test_a_link_planted_where_the_staging_directory_would_be_moves_nothing(where):
    """Attack 6, s01/s02: the staging directory's name was known in advance (.rootsand-staging.NAME): a link
    planted there by a sandbox or another user put the staging directory, and the products carried out of
    it, where the link led (a site-packages, where x.tar.pth then ran). Its name has random letters now."""
    tree = tiny_tree(where)
    elsewhere = where / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, where / ".rootsand-staging.planted")
    sandbox("sh", "-c", "echo ok > ../ok_1_all.deb", opts=["--profile", "fakeroot", "--name", "planted"], cwd=tree,
            check_rc=0)
    assert os.listdir(elsewhere) == [] and (where / "ok_1_all.deb").read_text() == "ok\n"
    assert os.readlink(where / ".rootsand-staging.planted") == str(elsewhere)


def test_an_exception_for_the_current_directory_is_none_for_its_parent(tmp_path):
    """Attack 6, s03: --unprotect of a package directory inside ~/.local made its parent, site-packages, the
    staging directory, and a build's ../x.tar.pth was carried there for the user's Python to run. The home
    rule judges the parent on its own: it stays read-only, as everything beside the current directory."""
    home = tmp_path / "home"
    site = home / ".local" / "lib" / "python3" / "site-packages"
    (site / "mypkg").mkdir(parents=True)
    env = dict(os.environ, HOME=str(home))
    r = sandbox("sh", "-c", "echo ok > ../evil_1_all.deb; echo $?", cwd=site / "mypkg", env=env,
                opts=["--profile", "fakeroot", "--unprotect", "~/.local/lib/python3/site-packages/mypkg"])
    assert r.returncode == 0 and r.stdout.strip() != "0", r.stderr  # the write failed: read-only
    assert sorted(os.listdir(site)) == ["mypkg"]
    assert not any(".rootsand-staging" in line for line in r.stderr.splitlines()), r.stderr
