"""The sandbox's file system as the unprivileged user sees it: what is visible, writable, and left on the host."""

import os
import shutil
import subprocess
import uuid

import pytest

from conftest import assert_command_failed, command_stderr, run, sandbox

UID = os.getuid()
HOME = os.path.expanduser("~")


@pytest.fixture
def project(tmp_path):
    """A current directory outside $HOME, as a build or a script would use."""
    d = tmp_path / "project"
    d.mkdir()
    return d


def test_current_directory_is_writable_and_files_are_yours(project):
    sandbox("sh", "-c", "echo built > out.txt && mkdir -p sub && touch sub/x", cwd=project, check_rc=0)
    assert (project / "out.txt").read_text() == "built\n"
    assert os.stat(project / "out.txt").st_uid == UID
    assert os.stat(project / "sub" / "x").st_uid == UID


def test_home_is_hidden_even_through_a_symlink(project):
    secret = os.path.join(HOME, f"secret-{uuid.uuid4().hex}")
    with open(secret, "w") as f:
        f.write("top secret\n")
    try:
        os.symlink(secret, project / "link")
        r = sandbox("sh", "-c", f"cat {secret}; cat link; ls -A $HOME | wc -l", cwd=project, check_rc=0)
        assert r.stdout == "0\n"  # $HOME exists inside, empty
        assert command_stderr(r) == [f"cat: {secret}: No such file or directory",
                                     "cat: link: No such file or directory"]  # the link leads nowhere
    finally:
        os.unlink(secret)


@pytest.mark.parametrize("path", ["/usr/rootsand-x", "/etc/rootsand-x", "/rootsand-x", "/usr/bin/rootsand-x"])
def test_system_directories_and_root_are_read_only(path):
    r = sandbox("touch", path)
    assert_command_failed(r, 1, f"touch: cannot touch '{path}': Read-only file system")
    assert not os.path.exists(path)


def test_tmp_is_private_both_ways():
    name = f"rootsand-{uuid.uuid4().hex}"
    with open(f"/tmp/{name}-host", "w"):
        pass
    try:
        r = sandbox("sh", "-c", f"ls /tmp; touch /tmp/{name}-inside", cwd="/", check_rc=0)
        assert f"{name}-host" not in r.stdout
        assert not os.path.exists(f"/tmp/{name}-inside")
    finally:
        os.unlink(f"/tmp/{name}-host")


def test_shadow_bound_elsewhere_stays_unreadable():
    r = sandbox("cat", "/shadow", opts=["--ro-bind", "/etc/shadow:/shadow"])
    assert_command_failed(r, 1, "cat: /shadow: Permission denied")
    assert_command_failed(sandbox("cat", "/etc/shadow"), 1, "cat: /etc/shadow: Permission denied")


def test_cli_bind_ro_bind_and_tmpfs(tmp_path, project):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (ro / "data").write_text("ro data\n")
    script = "echo w > /mnt/rw/new && cat /mnt/ro/data && ! touch /mnt/ro/x 2>/dev/null && touch /scratch/t && echo ok"
    r = sandbox("sh", "-c", script, opts=["--bind", f"{rw}:/mnt/rw", "--ro-bind", f"{ro}:/mnt/ro", "--tmpfs", "/scratch"],
                cwd=project, check_rc=0)
    assert r.stdout.split() == ["ro", "data", "ok"]
    assert (rw / "new").read_text() == "w\n"
    assert sorted(os.listdir(ro)) == ["data"]


def test_bind_without_destination_uses_the_same_path(tmp_path, project):
    other = tmp_path / "other"
    other.mkdir()
    sandbox("touch", str(other / "made"), opts=["--bind", str(other)], cwd=project, check_rc=0)
    assert (other / "made").exists()


def test_missing_bind_source_is_125(project):
    r = sandbox("true", opts=["--bind", "/no/such/dir:/x"], cwd=project, check_rc=125)
    assert r.stderr.startswith("rootsand: error:") and "/no/such/dir" in r.stderr and "does not exist" in r.stderr


def test_overlay_shows_changes_inside_only(tmp_path, project):
    src = tmp_path / "src"
    src.mkdir()
    (src / "keep").write_text("original\n")
    (src / "gone").write_text("x")
    script = "echo changed > /ov/keep && rm /ov/gone && touch /ov/new && ls /ov && cat /ov/keep"
    r = sandbox("sh", "-c", script, opts=["--overlay", f"{src}:/ov"], cwd=project, check_rc=0)
    assert r.stdout.split() == ["keep", "new", "changed"]
    assert (src / "keep").read_text() == "original\n" and sorted(os.listdir(src)) == ["gone", "keep"]


def test_overlay_of_the_current_directory_with_odd_names(tmp_path):
    odd = tmp_path / "a,b:c\\d"
    odd.mkdir()
    (odd / "f").write_text("1")
    r = sandbox("sh", "-c", "echo 2 > f && cat f", opts=["--overlay", str(odd)], cwd=odd, check_rc=0)
    assert r.stdout.strip() == "2" and (odd / "f").read_text() == "1"


def test_overlay_with_many_lower_dirs(tmp_path, project):
    lowers = []
    for i in range(60):
        d = tmp_path / ("layer-with-a-rather-long-name-to-pass-the-4096-byte-option-limit-" + str(i).zfill(3))
        d.mkdir()
        (d / f"f{i}").write_text(str(i))
        lowers.append(str(d))
    profile = project / "many.toml"
    profile.write_text('extends = "default"\n[[mount]]\ntype = "overlay"\nupper = "tmpfs"\ndst = "/layers"\n'
                       f"lower = {lowers!r}\n".replace("'", '"'))
    r = sandbox("sh", "-c", "ls /layers | wc -l; touch /layers/new && echo ok", opts=["--profile", str(profile)],
                cwd=project, check_rc=0)
    assert r.stdout.split() == ["60", "ok"]


def test_dev_has_the_usual_nodes_and_no_disks():
    names = set(sandbox("ls", "/dev", check_rc=0).stdout.split())
    assert names == {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdin",
                     "stdout", "stderr", "core"}
    assert sandbox("sh", "-c", "echo x > /dev/null && head -c 4 /dev/urandom | wc -c", check_rc=0).stdout.strip() == "4"


def test_etc_hostname_and_hosts_follow_the_hostname():
    r = sandbox("sh", "-c", "cat /etc/hostname; grep box7 /etc/hosts", opts=["--hostname", "box7"], check_rc=0)
    assert r.stdout.splitlines()[0] == "box7" and "127.0.1.1" in r.stdout
    with open("/etc/hostname") as f:
        assert "box7" not in f.read()


def test_proc_sys_is_read_only():
    r = sandbox("sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid")
    assert_command_failed(r, 2, "sh: 1: cannot create /proc/sys/kernel/ns_last_pid: Read-only file system")


def test_build_profile_builds_a_c_program(project):
    (project / "hello.c").write_text('#include <stdio.h>\nint main(void){puts("hello from make");return 0;}\n')
    (project / "Makefile").write_text("hello: hello.c\n\tcc -o hello hello.c\n")
    sandbox("make", opts=["--profile", "build"], cwd=project, check_rc=0)
    assert os.stat(project / "hello").st_uid == UID
    assert subprocess.run([str(project / "hello")], capture_output=True, text=True).stdout == "hello from make\n"


def test_build_profile_usr_local_is_a_throwaway_overlay(project):
    name = f"rootsand-{uuid.uuid4().hex}"
    r = sandbox("sh", "-c", f"touch /usr/local/bin/{name} && ls /usr/local/bin/{name} && echo $MAKEFLAGS",
                opts=["--profile", "build"], cwd=project, check_rc=0)
    assert r.stdout.splitlines()[-1] == f"-j{os.cpu_count()}"
    assert not os.path.exists(f"/usr/local/bin/{name}")


FAKE_CCACHE = """#!/bin/sh
# ccache's choice of directory (ccache 4: $CCACHE_DIR, else ~/.ccache when it exists, else ~/.cache/ccache),
# and a hit counted when the entry is there from an earlier run
dir=${CCACHE_DIR:-$HOME/.cache/ccache}
[ -d "$HOME/.ccache" ] && [ -z "$CCACHE_DIR" ] && dir=$HOME/.ccache
mkdir -p "$dir" && if [ -e "$dir/entry" ]; then echo hit; else echo miss; echo compiled > "$dir/entry"; fi
"""


def _new_home(tmp_path, project, programs=("ccache",)) -> tuple:
    """A home as a new account has it, and an environment with HOME there and PATH leading first to
    `programs` in the project's bin/ (visible inside, and on the host's PATH for the build profile's rule)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".profile").write_text("")
    (project / "bin").mkdir()
    for name in programs:
        (project / "bin" / name).write_text(FAKE_CCACHE if name == "ccache" else "#!/bin/sh\n")
        (project / "bin" / name).chmod(0o755)
    path = f"{project}/bin:{os.environ['PATH']}"
    return home, path, dict(os.environ, HOME=str(home), PATH=path)


def test_build_caches_work_from_the_first_run(tmp_path, project):
    """Issue 20: a cache the host does not have yet is made there (yours, mode 0700), not left in the
    sandbox's throw-away $HOME: the second run hits."""
    import stat

    home, path, env = _new_home(tmp_path, project, ("ccache", "cargo"))
    runs = [sandbox("sh", "-c", "ccache; echo pip > $HOME/.cache/pip/probe; touch $HOME/.cargo/registry/crate",
                    opts=["--profile", "build"], cwd=project, env=env, check_rc=0) for _ in range(2)]
    assert [r.stdout for r in runs] == ["miss\n", "hit\n"]
    assert (home / ".cache" / "ccache" / "entry").read_text() == "compiled\n"
    assert (home / ".cache" / "pip" / "probe").read_text() == "pip\n"
    assert (home / ".cargo" / "registry" / "crate").exists()
    for made in (".cache", ".cache/ccache", ".cache/pip", ".cargo", ".cargo/registry", ".cargo/git"):
        st = os.stat(home / made)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (UID, 0o700), made
    # only the caches of the tools on PATH (npm and go where the host has them), never ccache's old place
    assert sorted(os.listdir(home)) == sorted([".cache", ".cargo", ".profile"]
                                              + [".npm"] * bool(shutil.which("npm", path=path))
                                              + ["go"] * bool(shutil.which("go", path=path)))
    # the rest of the home rule holds: only the caches are writable
    r = sandbox("sh", "-c", "touch $HOME/.cache/other", opts=["--profile", "build", "--bind", f"{home}/.cache"],
                cwd=project, env=env)
    assert_command_failed(r, 1, f"touch: cannot touch '{home}/.cache/other': Read-only file system")


def test_build_caches_made_are_shown_by_dry_run_and_not_made_by_it(tmp_path, project):
    import json

    home, _, env = _new_home(tmp_path, project)
    r = run(["run", "--dry-run", "-v", "--profile", "build", "--", "true"], cwd=project, env=env, check_rc=0)
    made = [f"{home}/.cache/pip", f"{home}/.cache/ccache"]
    assert json.loads(r.stdout)["resolved"]["made"][:2] == made
    for path in made:
        assert f"  make     {path}  absent: made (yours, mode 0700) before it is bound" in r.stderr.splitlines()
    assert os.listdir(home) == [".profile"]


def test_build_caches_are_not_made_through_a_link_into_the_home(tmp_path, project):
    """~/.cache a link (a sandbox may have planted it) into the home: the run is refused, nothing is made."""
    home, _, env = _new_home(tmp_path, project)
    (home / ".config").mkdir()
    (home / ".cache").symlink_to(home / ".config")
    r = run(["run", "--profile", "build", "--", "true"], cwd=project, env=env, check_rc=125)
    errors = [line for line in r.stderr.splitlines() if line.startswith("rootsand: error:")]
    assert len(errors) == 1 and errors[0].startswith("rootsand: error: profile ")
    assert errors[0].endswith(
        f": {home}/.cache is a symbolic link into your home directory (to {home}/.config/pip), which a sandbox may "
        "have planted: it is not followed")
    assert os.listdir(home / ".config") == []


def test_build_caches_are_not_made_where_a_link_leads_elsewhere(tmp_path, project):
    """Attack 6, c01: ~/.cache a link out of the home (a sandbox run from there may have planted it): binding
    an existing target is as before, but the launcher no longer makes directories where the link leads."""
    home, _, env = _new_home(tmp_path, project)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / ".cache").symlink_to(elsewhere)
    r = run(["run", "--profile", "build", "--", "true"], cwd=project, env=env, check_rc=0)
    assert os.listdir(elsewhere) == []
    assert f"{home}/.cache/pip is not made: a link on the way leads to {elsewhere}/pip" in r.stderr, r.stderr


def test_rootfs_with_busybox(tmp_path, project):
    busybox = shutil.which("busybox") or "/bin/busybox"
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(busybox, root / "bin" / "busybox")
    for tool in ("sh", "ls", "cat", "id", "mount", "touch"):
        os.symlink("busybox", root / "bin" / tool)
    for d in ("proc", "dev", "tmp", "etc"):
        (root / d).mkdir()
    r = sandbox("/bin/sh", "-c", "ls /; ls /proc/1 >/dev/null && echo proc-ok; touch /tmp/t /made && echo w",
                opts=["--rootfs", str(root), "-e", "PATH=/bin", "--chdir", "/"], cwd=project, check_rc=0)
    top = r.stdout.split()
    assert {"bin", "proc", "dev", "tmp", "etc"} <= set(top) and "usr" not in top
    assert "proc-ok" in top and "w" in top
    assert (root / "made").exists() and not (root / "tmp" / "t").exists()


def test_a_rootfs_without_python_runs_commands_by_name(tmp_path, project):
    """The command is looked up in PATH without Python's library, which a busybox or Alpine tree lacks
    (os.execvpe imported 'warnings' there: an internal error, exit 125)."""
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", root / "bin" / "busybox")
    for tool in ("sh", "ls", "echo"):
        os.symlink("busybox", root / "bin" / tool)
    (root / "sbin").mkdir()
    (root / "sbin" / "echo").write_text("#!/bin/sh\necho never\n")  # not executable: skipped, as execvp does
    r = sandbox("ls", "/", opts=["--rootfs", str(root), "--chdir", "/", "-e", "PATH=/sbin:/bin"], cwd=project,
                check_rc=0)
    assert {"bin", "sbin"} <= set(r.stdout.split()) and r.stderr == ""
    r = sandbox("echo", "from bin", opts=["--rootfs", str(root), "--chdir", "/", "-e", "PATH=/sbin:/bin"],
                cwd=project, check_rc=0)
    assert r.stdout == "from bin\n"
    r = sandbox("nosuch", opts=["--rootfs", str(root), "--chdir", "/", "-e", "PATH=/sbin:/bin"], cwd=project,
                check_rc=127)
    assert r.stderr.splitlines() == ["rootsand: error: nosuch: command not found in the sandbox",
                                     "rootsand: hint: PATH inside is /sbin:/bin"]


def test_custom_profile_with_extends_dir_symlink_file_env_and_profile_dir(tmp_path, project):
    pdir = tmp_path / "profiles"
    pdir.mkdir()
    (pdir / "data.txt").write_text("from the profile dir\n")
    (pdir / "mine.toml").write_text('''
description = "test profile"
extends = "default"

[sandbox]
hostname = "custom"

[env]
set = { GREETING = "hi ${USER}" }

[[mount]]
type = "dir"
dst = "/work/cache"
mode = "0700"

[[mount]]
type = "symlink"
src = "/work/cache"
dst = "/cache"

[[mount]]
type = "file"
dst = "/etc-extra/motd"
content = "welcome"

[[mount]]
type = "ro-bind"
src = "${PROFILE_DIR}/data.txt"
dst = "/data.txt"
''')
    script = "hostname; echo $GREETING; stat -c %a /work/cache; readlink /cache; cat /etc-extra/motd; echo; cat /data.txt"
    r = sandbox("sh", "-c", script, opts=["--profile", str(pdir / "mine.toml")], cwd=project, check_rc=0)
    user = os.environ.get("USER") or __import__("pwd").getpwuid(UID).pw_name
    assert r.stdout.splitlines() == ["custom", f"hi {user}", "700", "/work/cache", "welcome", "from the profile dir"]


BAD_PROFILES = {
    "broken-toml": ("[sandbox\nhostname = 1\n", ["invalid TOML"]),
    "unknown-key": ('[sandbox]\nhostnme = "x"\n', ["line 2", "sandbox.hostnme"]),
    "wrong-type": ("[sandbox]\nhostname = 5\n", ["line 2", "sandbox.hostname"]),
    "missing-source": ('[[mount]]\ntype = "bind"\nsrc = "/no/such/source"\ndst = "/x"\n', ["/no/such/source"]),
    "unknown-variable": ('[[mount]]\ntype = "tmpfs"\ndst = "${NOPE}/x"\n', ["NOPE"]),
    "bad-size": ('[[mount]]\ntype = "tmpfs"\ndst = "/x"\nsize = "lots"\n', ["size"]),
}


@pytest.mark.parametrize("name", sorted(BAD_PROFILES))
def test_bad_profiles_are_one_error_naming_file_and_key(tmp_path, name):
    text, needles = BAD_PROFILES[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    r = sandbox("true", opts=["--profile", str(path)], check_rc=125)
    lines = r.stderr.splitlines()
    assert len(lines) <= 2 and lines[0].startswith("rootsand: error:") and str(path) in lines[0], r.stderr
    for needle in needles:
        assert needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_extends_cycle_and_binary_garbage(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "./b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "./a.toml"\n')
    r = sandbox("true", opts=["--profile", str(tmp_path / "a.toml")], check_rc=125)
    assert "cycle" in r.stderr and "a.toml" in r.stderr
    (tmp_path / "junk.toml").write_bytes(bytes(range(256)) * 4)
    r = sandbox("true", opts=["--profile", str(tmp_path / "junk.toml")], check_rc=125)
    assert r.stderr.startswith("rootsand: error:") and "junk.toml" in r.stderr and "Traceback" not in r.stderr


def test_unknown_profile_name():
    r = sandbox("true", opts=["--profile", "no-such-profile"], check_rc=125)
    assert r.stderr.startswith("rootsand: error:") and "no-such-profile" in r.stderr


def test_profiles_list_and_show():
    out = run(["profiles"], check_rc=0).stdout
    for name in ("default", "build", "untrusted", "fakeroot", "net"):
        assert any(line.split()[0] == name for line in out.splitlines()), out
    shown = run(["profiles", "show", "build"], check_rc=0).stdout
    import tomllib

    data = tomllib.loads(shown)
    assert any(m.get("dst") == "/usr/local" and m["type"] == "overlay" for m in data["mount"])


def test_overlay_with_a_kept_upper_directory(tmp_path, project):
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    (lower / "f").write_text("old\n")
    profile = project / "keep.toml"
    profile.write_text(f'extends = "default"\n[[mount]]\ntype = "overlay"\nlower = ["{lower}"]\n'
                       f'upper = "{upper}"\ndst = "/data"\n')
    sandbox("sh", "-c", "echo new > /data/f && touch /data/added", opts=["--profile", str(profile)], cwd=project,
            check_rc=0)
    assert (lower / "f").read_text() == "old\n" and not (lower / "added").exists()
    assert (upper / "f").read_text() == "new\n" and (upper / "added").exists()
    r = sandbox("cat", "/data/f", opts=["--profile", str(profile)], cwd=project, check_rc=0)
    assert r.stdout == "new\n"  # the changes are still there next time


def test_legacy_overlay_option_string_takes_fd_paths(tmp_path):
    """The fallback for kernels before 6.8 (no "lowerdir+"): lower dirs as /proc/self/fd/N in one string."""
    from rootsand.linux import libc
    from rootsand.ops import doctor

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / d).write_text(d)

    def probe():
        doctor._own_userns()  # opened after: an overlay layer must be a mount of the caller's namespace
        fds = [os.open(tmp_path / d, os.O_PATH) for d in ("a", "b")]
        libc.mount("tmpfs", "/mnt", "tmpfs", 0)
        for d in ("upper", "work", "merged"):
            os.mkdir(f"/mnt/{d}")
        lowers = ":".join(f"/proc/self/fd/{fd}" for fd in fds)
        libc.mount("overlay", "/mnt/merged", "overlay", 0,
                   f"lowerdir={lowers},upperdir=/mnt/upper,workdir=/mnt/work,userxattr")
        assert sorted(os.listdir("/mnt/merged")) == ["a", "b"]

    assert doctor._probe(probe) is None
