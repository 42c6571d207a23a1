"""Package builds that lose nothing (issue 20): dpkg-buildpackage from inside the source tree leaves its
products in the host's parent directory, the user's; what else a command writes beside its directory is
named and discarded, or refused; the products at the top of the start directory are the user's; no hint
after a failure it does not explain. A tiny Debian source package made here, real dpkg-dev and debhelper."""

import json
import os
import signal
import stat
import subprocess

import pytest

from conftest import rootsand_argv, run, sandbox
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
        f"Source: tiny\nSection: misc\nPriority: optional\nMaintainer: T <t@example.org>\nBuild-Depends: {build_depends}\n"
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
ln -s /etc/passwd ../link.deb
mkfifo ../fifo.deb
printf x > '../two
lines.deb'
echo h > ../h0.txt && ln ../h0.txt ../hard.deb
truncate -s 20G ../huge.iso
echo ok > ../ok.deb
cp /bin/true ../su.deb && chmod 4755 ../su.deb
echo new > ../replace.deb
echo d > ../isdir.deb
"""


def test_what_is_written_beside_the_tree_is_carried_when_a_product_and_else_named_and_discarded(where):
    tree = tiny_tree(where)
    (where / "replace.deb").write_text("old\n")
    (where / "isdir.deb").mkdir()
    r = sandbox("sh", "-c", ATTACK, opts=["--profile", "fakeroot"], cwd=tree, check_rc=0)
    assert sorted(os.listdir(where)) == ["isdir.deb", "ok.deb", "replace.deb", "su.deb", "tiny-1.0"]
    assert (where / "ok.deb").read_text() == "ok\n" and (where / "replace.deb").read_text() == "new\n"
    for name in ("ok.deb", "replace.deb", "su.deb"):
        st = os.stat(where / name)
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()) and not st.st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert os.listdir(where / "isdir.deb") == []
    lines = [line for line in r.stderr.splitlines() if line.startswith("rootsand:")]
    assert len(lines) == 2, r.stderr
    assert lines[0] == (f"rootsand: warning: {where}/isdir.deb is not a regular file: not replaced by the isdir.deb "
                        "the command wrote, which is discarded")
    prefix = (f"rootsand: warning: discarded what the command wrote beside the current directory, in {where} (only "
              "files named *.deb *.udeb *.ddeb *.changes *.buildinfo *.dsc *.tar.* *.diff.gz *.build are kept there): ")
    assert lines[1].startswith(prefix)
    assert sorted(lines[1][len(prefix):].split(", ")) == sorted(
        ["notes.txt", "d/", "link.deb", "fifo.deb", "two\\x0alines.deb", "h0.txt", "hard.deb", "huge.iso"])


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
    staging = f"{where}/.rootsand-staging.staged"
    assert plan["resolved"]["handover"]["staging"] == staging and plan["resolved"]["handover"]["top"] == tree
    step = plan["resolved"]["mounts"][plan["handover"]["mount"]]
    assert (step["type"], step["src"], step["dst"]) == ("bind", staging, str(where))
    assert sorted(os.listdir(where)) == ["tiny-1.0"]  # --dry-run makes nothing


def test_a_killed_launchers_staging_directory_is_removed_by_the_next_sweep(where):
    tree = tiny_tree(where)
    proc = subprocess.Popen(rootsand_argv() + ["run", "--profile", "fakeroot", "--", "sh", "-c",
                                               "echo half > ../half.deb && mkdir ../locked && chmod 000 ../locked && "
                                               "echo ready && exec sleep 600"],
                            cwd=tree, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    staging = [n for n in os.listdir(where) if n.startswith(".rootsand-staging.")]
    assert len(staging) == 1  # nobody was there to hand it over
    r = run(["cleanup"], check_rc=0)
    assert sorted(os.listdir(where)) == ["tiny-1.0"]
    line = next(line for line in r.stderr.splitlines() if "staging directory" in line)
    assert line.startswith(f"rootsand: warning: removed {where}/{staging[0]}, the staging directory of a sandbox whose "
                           "launcher was killed: discarded ")
    assert sorted(line.split(": discarded ")[1].split(", ")) == ["half.deb", "locked"]
