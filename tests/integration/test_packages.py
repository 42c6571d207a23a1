"""Package builds with real ownership (the fakeroot profile), against Debian's fakeroot, and
`rootsand unshare` for the files they leave behind. Real dpkg, tar, cpio, busybox and the kernel."""

import glob
import os
import shutil
import stat
import subprocess
import tarfile

import pytest

from conftest import kill_once_ready, run, sandbox
from debsrc import NAME, OWNED


def subid_start() -> int:
    import pwd

    name = pwd.getpwuid(os.getuid()).pw_name
    with open("/etc/subuid") as f:
        for line in f:
            user, start, _ = line.strip().split(":")
            if user in (name, str(os.getuid())):
                return int(start)
    raise AssertionError("no subordinate range for the test user")


def listing(deb: str) -> list[tuple]:
    """dpkg-deb -c without the dates: mode, owner, size, name."""
    out = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    return [(f[0], f[1], f[2], " ".join(f[5:])) for f in (line.split() for line in out.splitlines())]


def control(deb: str) -> str:
    return subprocess.run(["dpkg-deb", "-I", deb, "control"], capture_output=True, text=True, check=True).stdout


def test_dpkg_buildpackage_in_the_fakeroot_profile_equals_fakeroots(tmp_path, deb_source):
    ours = deb_source(tmp_path / "ours")
    theirs = deb_source(tmp_path / "theirs")
    # From the directory holding the tree (dpkg-buildpackage writes ../*.deb, and only the current directory
    # is writable), into the tree with --chdir.
    r = sandbox("dpkg-buildpackage", "-us", "-uc", "-b", opts=["--profile", "fakeroot", "--chdir",
                os.path.basename(ours)], cwd=os.path.dirname(ours), timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    done = subprocess.run(["dpkg-buildpackage", "-us", "-uc", "-b", "-rfakeroot"], cwd=theirs, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    debs = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "ours" / "*.deb")))
    assert debs and debs == sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "theirs" / "*.deb")))
    for name in debs:
        a, b = str(tmp_path / "ours" / name), str(tmp_path / "theirs" / name)
        assert listing(a) == listing(b), name
        assert control(a) == control(b), name
    main = next(name for name in debs if "dbgsym" not in name)
    # The owners and modes the package's rules gave (setuid, setgid, www-data's, an id without a name).
    assert {e[3]: e[:2] for e in listing(str(tmp_path / "ours" / main)) if e[3] in OWNED} == OWNED
    # Root inside is a subordinate id: the products it leaves at the top of the directory the run started in
    # are handed to the user at exit; the tree keeps the owners the build gave it.
    assert os.stat(tmp_path / "ours" / debs[0]).st_uid == os.getuid()
    assert os.stat(os.path.join(ours, "debian", NAME, "usr", "bin", NAME)).st_uid == subid_start()


def test_debuild_in_the_fakeroot_profile(tmp_path, deb_source):
    if not shutil.which("debuild"):
        pytest.skip("devscripts is not installed: tests/run.sh installs it")
    tree = deb_source(tmp_path / "build")
    r = sandbox("debuild", "-us", "-uc", "-b", opts=["--profile", "fakeroot", "--chdir", os.path.basename(tree)],
                cwd=os.path.dirname(tree), timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    deb = glob.glob(str(tmp_path / "build" / f"{NAME}_*.deb"))
    assert len(deb) == 1 and {e[3]: e[:2] for e in listing(deb[0]) if e[3] in OWNED} == OWNED


STAGE = """
set -e
mkdir -p pkg/DEBIAN pkg/usr/bin pkg/var/www pkg/usr/share/x
printf 'Package: staged\\nVersion: 1\\nArchitecture: all\\nMaintainer: t <t@example.org>\\nDescription: t\\n' > pkg/DEBIAN/control
echo data > pkg/usr/bin/tool; chown root:root pkg/usr/bin/tool; chmod 4755 pkg/usr/bin/tool
echo web > pkg/var/www/index; chown 33:33 pkg/var/www pkg/var/www/index
echo grp > pkg/usr/bin/gtool; chmod 2755 pkg/usr/bin/gtool
ln pkg/usr/bin/gtool pkg/usr/bin/gtool-link
mkfifo pkg/usr/share/x/fifo
ln -s ../bin/tool pkg/usr/share/x/link; chown -h 1234:1234 pkg/usr/share/x/link
cp /bin/true pkg/usr/bin/ping; /usr/sbin/setcap cap_net_raw+ep pkg/usr/bin/ping
cd pkg && tar --xattrs --xattrs-include='*' --numeric-owner -cf ../staged.tar usr var && cd ..
cd pkg && find usr var | cpio -o -H newc --quiet > ../staged.cpio && cd ..
dpkg-deb --build pkg staged.deb >/dev/null
"""


def cpio_entries(path: str) -> dict[str, tuple[int, int, int]]:
    """name -> (mode, uid, gid) from a newc archive."""
    out = {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while data[pos:pos + 6] == b"070701":
        fields = [int(data[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, uid, gid, size, namesize = fields[1], fields[2], fields[3], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            break
        out[name] = (mode, uid, gid)
    return out


def test_a_hand_staged_package_records_every_owner_mode_link_and_capability(tmp_path):
    sandbox("sh", "-c", STAGE, opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    with tarfile.open(tmp_path / "staged.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
    tool, index, gtool = members["usr/bin/tool"], members["var/www/index"], members["usr/bin/gtool"]
    assert (tool.uid, tool.gid, tool.mode) == (0, 0, 0o4755)
    assert (index.uid, index.gid) == (33, 33) and (members["var/www"].uid, members["var/www"].gid) == (33, 33)
    assert gtool.mode == 0o2755 or members["usr/bin/gtool-link"].mode == 0o2755
    first, second = members["usr/bin/gtool"], members["usr/bin/gtool-link"]  # one is the other's hard link
    assert (second.islnk() and second.linkname == "usr/bin/gtool") or (first.islnk() and first.linkname == second.name)
    assert members["usr/share/x/fifo"].isfifo()
    link = members["usr/share/x/link"]
    assert link.issym() and link.linkname == "../bin/tool" and (link.uid, link.gid) == (1234, 1234)
    assert "SCHILY.xattr.security.capability" in members["usr/bin/ping"].pax_headers
    entries = cpio_entries(str(tmp_path / "staged.cpio"))
    assert entries["usr/bin/tool"] == (stat.S_IFREG | 0o4755, 0, 0)
    assert entries["var/www/index"][1:] == (33, 33)
    assert stat.S_ISFIFO(entries["usr/share/x/fifo"][0]) and entries["usr/share/x/link"][1:] == (1234, 1234)
    deb = {entry[3]: entry[:2] for entry in listing(str(tmp_path / "staged.deb"))}
    assert deb["./usr/bin/tool"] == ("-rwsr-xr-x", "root/root")
    assert deb["./usr/bin/gtool"] == ("-rwxr-sr-x", "root/root")
    assert deb["./var/www/index"][1] in ("33/33", "www-data/www-data")


def test_a_static_busybox_records_owners_too(tmp_path):
    """What fakeroot's LD_PRELOAD cannot do: a statically linked chown and tar."""
    ldd = subprocess.run(["ldd", "/bin/busybox"], capture_output=True, text=True)
    assert "not a dynamic executable" in ldd.stdout + ldd.stderr  # busybox-static: no libc to intercept
    script = "echo x > f && busybox chown 33:33 f && busybox chmod 4711 f && busybox tar -cf f.tar f && busybox stat -c '%u:%g %a' f"
    r = sandbox("sh", "-c", script, opts=["--profile", "fakeroot", "-e", "PATH=/bin:/usr/bin"], cwd=tmp_path,
                check_rc=0)
    assert r.stdout == "33:33 4711\n"
    host = os.stat(tmp_path / "f")
    # fakeroot maps the user to itself and every other id, root too, to the range: inside N is START + N
    # (for N below the user's own uid), so nothing the build makes can be the user's.
    assert (host.st_uid, host.st_gid) == (subid_start() + 33, subid_start() + 33)
    with tarfile.open(tmp_path / "f.tar") as tar:
        member = tar.getmember("f")
    assert (member.uid, member.gid, member.mode) == (33, 33, 0o4711)


def test_ownership_lives_in_the_file_system_across_runs(tmp_path):
    sandbox("sh", "-c", "echo x > f && chown 4242:77 f", opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    r = sandbox("stat", "-c", "%u:%g", "f", opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    assert r.stdout == "4242:77\n"


def test_mknod_fails_with_the_kernels_word_and_no_hint(tmp_path):
    """rootsand cannot tell why a command failed: a hint after every failure would mislead (a missing build
    dependency got the one about mknod), so the kernel's refusal stands alone."""
    r = sandbox("mknod", "dev", "c", "1", "3", opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=1)
    assert r.stderr.splitlines() == ["mknod: dev: Operation not permitted"]
    assert not os.path.exists(tmp_path / "dev")


def test_unshare_removes_what_a_plain_rm_cannot(tmp_path):
    tree = tmp_path / "build"
    run(["unshare", "--", "sh", "-c", "mkdir -p build/a/locked && echo x > build/a/f && chown -R 33:33 build && "
         "chmod 000 build/a/locked && chown 100:100 build/a/locked"], cwd=tmp_path, check_rc=0)
    assert os.stat(tree / "a" / "f").st_uid == subid_start() + 32  # unshare's map: inside 1 is START
    plain = subprocess.run(["rm", "-rf", str(tree)], capture_output=True, text=True)
    assert plain.returncode == 1 and "Permission denied" in plain.stderr
    r = run(["unshare", "--", "ls", "-ln", str(tree / "a")], cwd=tmp_path, check_rc=0)
    assert {line.split()[2] for line in r.stdout.splitlines()[1:]} == {"100", "33"}  # the ids as sandboxes see them
    run(["unshare", "--", "rm", "-rf", str(tree)], cwd=tmp_path, check_rc=0)
    assert not tree.exists()


def test_unshare_removes_what_a_fakeroot_build_left(tmp_path):
    sandbox("sh", "-c", "mkdir -p out/deep && echo x > out/deep/f && chown -R 33:33 out && chmod 000 out/deep",
            opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    assert subprocess.run(["rm", "-rf", str(tmp_path / "out")], capture_output=True).returncode == 1
    run(["unshare", "--", "rm", "-rf", str(tmp_path / "out")], cwd=tmp_path, check_rc=0)
    assert not (tmp_path / "out").exists()


def test_a_setuid_program_of_a_build_never_runs_as_the_user(tmp_path):
    """Root inside the fakeroot profile is a subordinate id: a setuid file it makes is not the user's."""
    sandbox("sh", "-c", "mkdir bin && cp /bin/true bin/sutool && chmod 4755 bin/sutool", opts=["--profile", "fakeroot"],
            cwd=tmp_path, check_rc=0)
    st = os.stat(tmp_path / "bin" / "sutool")
    assert st.st_mode & stat.S_ISUID and st.st_uid == subid_start() and st.st_uid != os.getuid()


def test_unshare_is_root_of_the_sandboxes_map_and_keeps_the_host_view(tmp_path):
    r = run(["unshare", "--", "sh", "-c", "id -u; head -n 1 /proc/self/uid_map; pwd; echo $MARKER"], cwd=tmp_path,
            env=dict(os.environ, MARKER="kept"), check_rc=0)
    lines = r.stdout.splitlines()
    assert lines[0] == "0" and lines[1].split() == ["0", str(os.getuid()), "1"]
    assert lines[2] == str(tmp_path) and lines[3] == "kept"  # the current directory and environment as they were
    assert run(["unshare", "--", "sh", "-c", "exit 7"], cwd=tmp_path).returncode == 7
    missing = run(["unshare", "--", "no-such-command-x"], cwd=tmp_path, check_rc=127)
    assert missing.stderr == "rootsand: error: no-such-command-x: No such file or directory\n"


def test_a_setuid_file_of_the_users_own_is_cleared_when_the_build_ends(tmp_path):
    """The user is mapped to itself in fakeroot (the source files are theirs): root inside can make a file
    of the user's setuid. Once the sandbox is gone rootsand clears that, and says so."""
    r = sandbox("sh", "-c", f"cp /bin/true mine && chown {os.getuid()}:{os.getgid()} mine && chmod 6755 mine && "
                "mkdir sub && cp /bin/true sub/theirs && chmod 4755 sub/theirs", opts=["--profile", "fakeroot"],
                cwd=tmp_path, check_rc=0)
    mine, theirs = os.stat(tmp_path / "mine"), os.stat(tmp_path / "sub" / "theirs")
    assert mine.st_uid == os.getuid() and stat.S_IMODE(mine.st_mode) == 0o755
    assert theirs.st_uid == subid_start() and stat.S_IMODE(theirs.st_mode) == 0o4755  # a subordinate id's
    assert (f"rootsand: warning: cleared the setuid/setgid bits of 1 file(s) of yours the sandbox left (another "
            f"user could have run them as you): {tmp_path}/mine") in r.stderr


def test_a_directory_too_wide_to_show_is_neither_walked_nor_changed(tmp_path):
    """Run from /tmp, the current directory is not shown (only an empty directory stands there), so the
    sandbox writes nothing there: the setuid clearing walked all of /tmp all the same, cleared the bits of
    the user's own setuid files there, and warned about the other users' directories it could not read."""
    import tempfile

    mine = tempfile.mkdtemp(dir="/tmp")
    try:
        tool = os.path.join(mine, "setuid-tool")
        shutil.copy("/bin/true", tool)
        os.chmod(tool, 0o4755)
        r = sandbox("true", opts=["--profile", "fakeroot"], cwd="/tmp", check_rc=0)
        assert stat.S_IMODE(os.stat(tool).st_mode) == 0o4755  # the user's, where no sandbox could write
        assert [line for line in r.stderr.splitlines() if "setuid" in line or "could not check" in line] == []
        assert "the current directory /tmp is shared with other programs' sockets" in r.stderr
    finally:
        shutil.rmtree(mine)


def test_a_setgid_file_of_the_users_group_is_cleared_whoever_owns_it(tmp_path):
    """A subordinate id's file with the user's group and S_ISGID runs with the user's group for anyone: its
    setgid bit goes (its setuid bit, a subordinate id's, stays)."""
    r = sandbox("sh", "-c", f"mkdir sub && cp /bin/true sub/grp && chgrp {os.getgid()} sub/grp && chmod 6755 sub/grp",
                opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    st = os.stat(tmp_path / "sub" / "grp")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (subid_start(), os.getgid(), 0o4755)
    assert f"of yours the sandbox left (another user could have run them as you): {tmp_path}/sub/grp" in r.stderr


def _kill_a_build_that_left_a_setuid_file(directory) -> None:
    """A fakeroot run that makes `mine` setuid and the user's, its launcher SIGKILLed before its exit."""
    kill_once_ready(f"cp /bin/true mine && chown {os.getuid()} mine && chmod 4755 mine && echo ready && "
                    "exec sleep 600", directory, ["--profile", "fakeroot"])
    assert stat.S_IMODE(os.stat(directory / "mine").st_mode) == 0o4755  # nobody was there to clear it


def test_a_killed_launchers_setuid_file_of_the_users_is_cleared_by_cleanup(tmp_path):
    """The launcher clears them at exit: one SIGKILLed before that leaves them to the next sweep."""
    _kill_a_build_that_left_a_setuid_file(tmp_path)
    r = run(["cleanup"], check_rc=0)
    assert stat.S_IMODE(os.stat(tmp_path / "mine").st_mode) == 0o755
    assert f"{tmp_path}/mine" in r.stderr


def test_a_killed_launchers_setuid_file_is_cleared_by_another_runs_sweep(tmp_path):
    """Any sweep that retires a killed launcher's entry (here the exit of a run elsewhere) clears first."""
    (tmp_path / "build").mkdir()
    (tmp_path / "other").mkdir()
    _kill_a_build_that_left_a_setuid_file(tmp_path / "build")
    r = sandbox("true", cwd=tmp_path / "other", check_rc=0)
    assert stat.S_IMODE(os.stat(tmp_path / "build" / "mine").st_mode) == 0o755
    assert f"{tmp_path}/build/mine" in r.stderr


def test_a_setuid_file_with_a_newline_in_its_name_is_cleared_and_named(tmp_path):
    name = "two\nlines"
    r = sandbox("sh", "-c", f"cp /bin/true '{name}' && chown {os.getuid()} '{name}' && chmod 4755 '{name}'",
                opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o755
    assert f"{tmp_path}/two\\x0alines" in r.stderr and "could not check" not in r.stderr


def test_the_clearing_walk_is_not_pointed_elsewhere_by_a_link_the_sandbox_planted(tmp_path):
    """A bound directory swapped for a link during the run: the walk keeps to the directories of the start,
    and the user's own setgid program elsewhere keeps its bit."""
    project, outside = tmp_path / "project", tmp_path / "outside"
    (project / "out").mkdir(parents=True)
    outside.mkdir()
    legit = outside / "legit"
    shutil.copy("/bin/true", legit)
    os.chmod(legit, 0o2755)
    r = sandbox("sh", "-c", "mv out out2 && ln -s ../outside out",
                opts=["--profile", "fakeroot", "--bind", f"{project}/out:/out"], cwd=project, check_rc=0)
    assert stat.S_IMODE(os.stat(legit).st_mode) == 0o2755
    assert "cleared the setuid" not in r.stderr
    assert f"could not check all the sandbox could write for setuid/setgid files of yours ({project}/out: " in r.stderr


def test_setuid_files_of_the_users_in_a_rootfs_tree_and_in_a_bound_file_are_cleared(tmp_path):
    """A --rootfs tree is writable (a chroot build), and so is a file bound read-write on its own."""
    root, tool = tmp_path / "rootfs", tmp_path / "tool"
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
    os.symlink("busybox", root / "bin" / "sh")
    shutil.copy("/bin/true", tool)
    script = (f"busybox cp /bin/busybox /made && busybox chown {os.getuid()} /made && busybox chmod 4755 /made "
              f"/bin/busybox /opt/tool")
    r = sandbox("/bin/sh", "-c", script, opts=["--profile", "fakeroot", "--rootfs", str(root), "-e", "PATH=/bin",
                                                "--bind", f"{tool}:/opt/tool"], cwd=tmp_path, check_rc=0)
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in (root / "made", root / "bin" / "busybox", tool)}
    assert modes == {"made": 0o755, "busybox": 0o755, "tool": 0o755}, r.stderr
    assert "could not check" not in r.stderr


def test_a_setuid_file_deep_below_many_directories_is_cleared_too(tmp_path):
    """The walk holds a directory fd per level: 1100 levels are past the usual soft limit of 1024 fds."""
    script = (f"for i in $(seq 1100); do mkdir d && cd d || exit 1; done; cp /bin/true deep && chown {os.getuid()} deep"
              " && chmod 4755 deep && pwd")
    try:
        r = sandbox("sh", "-c", script, opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
        deep = os.path.join(r.stdout.strip(), "deep")
        assert stat.S_IMODE(os.stat(deep).st_mode) == 0o755
        assert "could not check" not in r.stderr
    finally:  # the directories are a subordinate id's, and too deep for pytest's own clean-up (shutil.rmtree)
        run(["unshare", "--", "rm", "-rf", str(tmp_path / "d")], check_rc=0)


def test_a_setuid_file_of_the_users_own_hidden_in_a_locked_directory_is_cleared_too(tmp_path):
    """The build locks a directory (0711, a subordinate id's) that the user cannot list: the clearing walk
    runs with the sandbox's map and capabilities, so it still finds what is inside."""
    script = (f"mkdir hid && cp /bin/true hid/helper && chown {os.getuid()}:{os.getgid()} hid/helper && "
              "chmod 6755 hid/helper && chmod 0711 hid")
    r = sandbox("sh", "-c", script, opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    assert not os.access(tmp_path / "hid", os.R_OK)  # the user cannot list it
    assert stat.S_IMODE(os.stat(tmp_path / "hid" / "helper").st_mode) == 0o755
    assert f"{tmp_path}/hid/helper" in r.stderr
    run(["unshare", "--", "rm", "-rf", str(tmp_path / "hid")], check_rc=0)


def test_a_release_tree_configures_builds_and_passes_its_checks_in_the_build_profile(tmp_path, deb_source):
    """Issue 18, finding 7: a release tree has no .git, and gnulib's maint.mk (GNU hello's) runs git where
    `.git` is a directory: a .git made for the run broke `make check`. The tests' package checks the same
    way. Nothing is made now, and nothing appears."""
    tree = deb_source(tmp_path / "src")
    before = sorted(os.listdir(tree))
    r = sandbox("sh", "-c", "./configure -q >/dev/null && make -s >/dev/null && make check", opts=["--profile", "build"],
                cwd=tree, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout == "PASS: rootsand-demo counts lines and bytes\nPASS: rootsand-demo --version\n", r.stdout[-2000:]
    assert not [name for name in os.listdir(tree) if name in (".git", ".envrc", ".gitmodules", ".vscode", ".idea")
                or "rootsand-quarantine" in name]
    assert set(before) <= set(os.listdir(tree))
