"""Hardening as an attacker inside and as the user outside would check it: capabilities, no_new_privs,
session and terminal, limits, PID 1, fakeroot's limits, and the usual escape routes."""

import os
import re
import shutil
import signal
import subprocess
import uuid


from conftest import assert_command_failed, command_stderr, rootsand_argv, run, sandbox

UID = os.getuid()


def status_fields(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


CAP_SETFCAP = 1 << 31


def test_default_profile_drops_every_capability_but_setfcap_and_sets_nnp_and_seccomp():
    """CAP_SETFCAP stays where nested user namespaces are allowed: the kernel wants it to write their maps."""
    fields = status_fields(sandbox("cat", "/proc/self/status", check_rc=0).stdout)
    for cap in ("CapEff", "CapPrm", "CapBnd"):
        assert int(fields[cap], 16) == CAP_SETFCAP, (cap, fields[cap])
    for cap in ("CapInh", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])
    assert fields["NoNewPrivs"].strip() == "1"
    assert fields["Seccomp"].strip() == "2"


def test_untrusted_profile_drops_every_capability():
    fields = status_fields(sandbox("cat", "/proc/self/status", opts=["--profile", "untrusted"], check_rc=0).stdout)
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])


def test_file_capabilities_set_inside_give_nothing_on_the_host(tmp_path):
    """What CAP_SETFCAP allows: a file capability that counts only in user namespaces whose root is the user."""
    shutil.copy("/usr/bin/cat", tmp_path / "capcat")
    r = sandbox("sh", "-c", "/usr/sbin/setcap cap_net_raw+ep capcat && /usr/sbin/getcap capcat", cwd=tmp_path,
                check_rc=0)
    assert r.stdout.split()[-1] == "cap_net_raw=ep"
    done = subprocess.run([str(tmp_path / "capcat"), "/proc/self/status"], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0 and int(status_fields(done.stdout)["CapEff"], 16) == 0  # on the host: nothing


def test_root_inside_without_capabilities_cannot_do_root_things():
    r = sandbox("sh", "-c", "mount -t tmpfs none /tmp 2>&1; chown 5 /tmp 2>&1; cat /etc/shadow 2>&1; echo end",
                check_rc=0)
    lines = [line for line in r.stdout.splitlines() if "dmesg(1)" not in line]  # util-linux's hint after mount
    assert lines == ["mount: /tmp: permission denied.",  # each of the three refused, by the kernel
                     "chown: changing ownership of '/tmp': Operation not permitted",
                     "cat: /etc/shadow: Permission denied",
                     "end"], r.stdout
    assert command_stderr(r) == []


def test_fakeroot_keeps_only_the_file_capabilities():
    fields = status_fields(sandbox("cat", "/proc/self/status", opts=["--profile", "fakeroot"], check_rc=0).stdout)
    eff = int(fields["CapEff"], 16)
    names = {0: "chown", 1: "dac_override", 3: "fowner", 4: "fsetid", 6: "setgid", 7: "setuid", 31: "setfcap"}
    assert eff == sum(1 << bit for bit in names)
    assert int(fields["CapBnd"], 16) == eff
    assert not eff & (1 << 21)  # never CAP_SYS_ADMIN


def test_keep_id_with_kept_capabilities_gets_them_as_ambient(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text('extends = "default"\n[security]\ncapabilities = ["CAP_CHOWN"]\n')
    r = sandbox("cat", "/proc/self/status", opts=["--profile", str(profile), "--user", "1234"], cwd=tmp_path,
                check_rc=0)
    fields = status_fields(r.stdout)
    assert int(fields["CapEff"], 16) == 1 and int(fields["CapAmb"], 16) == 1 and fields["Uid"].split()[0] == "1234"


def test_setuid_binary_inside_gains_nothing(tmp_path):
    # A setuid-root (inside) copy of id in the writable current directory, run as another user inside.
    tmp_path.chmod(0o755)  # uid 1234 inside must reach it
    shutil.copy("/usr/bin/id", tmp_path / "suid-id")
    os.chmod(tmp_path / "suid-id", 0o4755)
    r = sandbox("./suid-id", opts=["--user", "1234"], cwd=tmp_path, check_rc=0)
    assert r.stdout.startswith("uid=1234") and "euid" not in r.stdout


def test_new_session_without_terminal():
    code = "import os; print(os.getsid(0) == os.getpid()); open('/dev/tty')"
    r = sandbox("python3", "-c", code, check_rc=1)
    assert r.stdout == "True\n"
    assert command_stderr(r)[-1] == "OSError: [Errno 6] No such device or address: '/dev/tty'", r.stderr


# Inside: open /dev/tty and ask whose session that terminal belongs to (0x5429: TIOCGSID).
DEVTTY = ("import fcntl, os, struct; fd = os.open('/dev/tty', os.O_RDWR); "
          "sid = struct.unpack('i', fcntl.ioctl(fd, 0x5429, b'0000'))[0]; "
          "print('devtty-session=' + ('own' if sid == os.getsid(0) else 'other'))")


def _in_script(command: str, env_code: str = "") -> str:
    """Run a shell command under script(1), which gives it a pty as its controlling terminal."""
    env = dict(os.environ, DEVTTY=env_code)
    done = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, env=env)
    return done.stdout.replace("\r", "")


def test_interactive_terminal_is_relayed_not_shared():
    exe = " ".join(rootsand_argv())
    # %d: the devpts instance the terminal belongs to (both are pts 0 of their own instance)
    out = _in_script(f"stat -L -c outer=%d:%t:%T /proc/self/fd/0; {exe} run -e DEVTTY=\"$DEVTTY\" -- sh -c "
                     "'test -t 0 && echo interactive; stat -L -c inner=%d:%t:%T /proc/self/fd/0; "
                     "python3 -c \"$DEVTTY\"; echo $((6*7))'",
                     env_code=DEVTTY)
    outer = re.search(r"outer=(\S+)", out).group(1)
    inner = re.search(r"inner=(\S+)", out).group(1)

    assert "interactive" in out and "42" in out
    assert inner != outer  # the command's terminal is its own pty, of the sandbox's devpts, not the user's
    assert "devtty-session=own" in out  # /dev/tty is that pty, of the command's session: not the host's


def test_relay_exit_status_and_input():
    exe = " ".join(rootsand_argv())
    done = subprocess.run(["script", "-qec", f"{exe} run -- sh -c 'read line; echo got:$line; exit 3'", "/dev/null"],
                          input="hello\n", capture_output=True, text=True, timeout=60)
    assert "got:hello" in done.stdout.replace("\r", "")
    assert done.returncode == 3


def test_untrusted_blocks_nested_user_namespaces():
    r = sandbox("unshare", "-U", "true", opts=["--profile", "untrusted"])
    assert_command_failed(r, 1, "unshare: unshare failed: Operation not permitted")  # seccomp: EPERM
    r = sandbox("unshare", "-U", "true", check_rc=0)  # the default profile allows them
    assert r.stderr == ""


def test_untrusted_blocks_nested_user_namespaces_even_without_seccomp(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text('extends = "untrusted"\n[security]\nseccomp = "none"\n')
    r = sandbox("sh", "-c", "cat /proc/sys/user/max_user_namespaces; unshare -U true", opts=["--profile", str(profile)])
    assert r.stdout == "0\n"
    # The kernel's answer with no user namespace left to make: ENOSPC.
    assert_command_failed(r, 1, "unshare: unshare failed: No space left on device")


def _fresh_runtime_dir(tmp_path) -> dict:
    """An environment whose runtime dir is new, as after a reboot (beside tmp_path/work, the directory to
    run in: a runtime dir below the current one keeps that from being bound)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    (tmp_path / "work").mkdir()
    return dict(os.environ, XDG_RUNTIME_DIR=str(runtime))


def _warnings(done) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("rootsand: warning:")]


def test_untrusted_limits_are_finite_and_said(tmp_path):
    r = sandbox("bash", "-c", "ulimit -f; ulimit -u; ulimit -n; ulimit -c", opts=["--profile", "untrusted"],
                env=_fresh_runtime_dir(tmp_path), cwd=tmp_path / "work", check_rc=0)
    fsize, nproc, nofile, core = r.stdout.split()
    assert fsize != "unlimited" and int(fsize) * 1024 == 1 << 30  # bash counts 1024-byte blocks
    assert nproc == "256" and nofile == "1024" and core == "0"
    warnings = _warnings(r)
    assert len(warnings) == 1 and "RLIMIT_DATA" in warnings[0] and "RLIMIT_NPROC" in warnings[0]


def test_the_limits_warning_is_said_once_per_boot_and_always_by_doctor_and_v(tmp_path):
    """Issue 20: the same warning about the host on every untrusted or agent run is noise."""
    from rootsand.security import cgroup

    env = _fresh_runtime_dir(tmp_path)
    line = ("rootsand: warning: no delegated cgroup v2 with these controllers: memory as RLIMIT_DATA, per process, "
            "pids as RLIMIT_NPROC")
    delegated = cgroup.delegated_cgroup()
    work = tmp_path / "work"
    runs = [sandbox("true", opts=["--profile", profile], env=env, cwd=work, check_rc=0)
            for profile in ("untrusted", "untrusted", "agent")]
    verbose = sandbox("true", opts=["--profile", "untrusted", "-v"], env=env, cwd=work, check_rc=0)
    doctor = run(["doctor"], env=env)
    if delegated and {"memory", "pids"} <= delegated[1]:  # nothing falls short here: nothing to say
        assert [_warnings(r) for r in runs + [verbose]] == [[]] * 4
        return
    assert [_warnings(r) for r in runs] == [
        [f"{line} (said once per boot: rootsand doctor and run -v say it again)"], [], []]
    assert line in verbose.stderr.splitlines()
    assert "degraded  cgroup v2" in doctor.stdout and "memory and pids limits fall back to rlimits" in doctor.stdout
    # a new boot (a runtime dir in /tmp outlives one): said again
    mark = tmp_path / "runtime" / "rootsand" / "said-limits"
    mark.write_text("another-boot\n" + mark.read_text().split("\n", 1)[1])
    again = sandbox("true", opts=["--profile", "untrusted"], env=env, cwd=work, check_rc=0)
    assert _warnings(again) == [f"{line} (said once per boot: rootsand doctor and run -v say it again)"]


def test_untrusted_file_size_limit_stops_a_big_write(tmp_path):
    r = sandbox("sh", "-c", "head -c 1100M /dev/zero > /tmp/big; echo $?; ls -l /tmp/big | awk '{print $5}'",
                opts=["--profile", "untrusted"], cwd=tmp_path, check_rc=0)
    assert r.stdout.split() == [str(128 + signal.SIGXFSZ), str(1 << 30)]  # head killed at exactly the limit
    assert command_stderr(r) == ["File size limit exceeded"]  # the shell's word for SIGXFSZ


def test_untrusted_fork_bomb_stops_short():
    code = ("import os, signal\n"
            "n = 0\n"
            "try:\n"
            "    while n < 5000:\n"
            "        if os.fork() == 0:\n"
            "            signal.pause(); os._exit(0)\n"  # holds its pid until the sandbox ends
            "        n += 1\n"
            "except OSError as e:\n"
            "    print(n, e.errno)\n")
    r = sandbox("python3", "-c", code, opts=["--profile", "untrusted", "--timeout", "20"], check_rc=0)
    forked, err = r.stdout.split()
    assert int(forked) < 256 and err == "11"  # EAGAIN at the pids limit


def test_untrusted_current_directory_changes_are_thrown_away(tmp_path):
    (tmp_path / "keep").write_text("original")
    r = sandbox("sh", "-c", "echo evil > keep; touch new; cat keep", opts=["--profile", "untrusted"], cwd=tmp_path,
                check_rc=0)
    assert r.stdout.strip() == "evil"
    assert (tmp_path / "keep").read_text() == "original" and not (tmp_path / "new").exists()


def test_pid1_cannot_be_traced_or_entered():
    code = ("import ctypes, os\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "print('ptrace', libc.ptrace(16, 1, 0, 0), ctypes.get_errno())\n"
            "for path in ('/proc/1/root/', '/proc/1/environ', '/proc/1/mem'):\n"
            "    try:\n"
            "        os.listdir(path) if path.endswith('/') else open(path, 'rb').read(1)\n"
            "        print(path, 'open')\n"
            "    except OSError as e:\n"
            "        print(path, e.errno)\n")
    r = sandbox("python3", "-c", code, check_rc=0)
    lines = r.stdout.splitlines()
    assert lines[0] == "ptrace -1 1"  # EPERM
    assert all(not line.endswith("open") for line in lines[1:]), lines


def test_launcher_is_out_of_sight():
    pid = os.getpid()  # the test process is an ancestor of the launcher: neither is visible inside
    r = sandbox("sh", "-c", f"test -e /proc/{pid} && echo visible; ls /proc | grep -cE '^[0-9]+$'", check_rc=0)
    assert "visible" not in r.stdout and int(r.stdout.split()[-1]) <= 4  # PID 1, sh, ls, grep


def test_fakeroot_cannot_remount_read_only_binds_writable():
    name = f"rootsand-{uuid.uuid4().hex}"
    r = sandbox("sh", "-c", f"mount -o remount,rw /usr; mount -o remount,rw,bind /usr; touch /usr/{name}; echo done",
                opts=["--profile", "fakeroot"], check_rc=0)
    assert r.stdout == "done\n"
    assert [line for line in command_stderr(r) if "dmesg(1)" not in line] == [
        "mount: /usr: permission denied.", "mount: /usr: permission denied.",
        f"touch: cannot touch '/usr/{name}': Read-only file system"], r.stderr
    assert not os.path.exists(f"/usr/{name}")


def test_fakeroot_records_owners_in_tar_and_dpkg_deb(tmp_path):
    script = """set -e
mkdir -p pkg/DEBIAN pkg/usr/share/demo
printf 'Package: demo\\nVersion: 1.0\\nArchitecture: all\\nMaintainer: t <t@e>\\nDescription: d\\n' > pkg/DEBIAN/control
echo data > pkg/usr/share/demo/file
chown -R 0:0 pkg
chown 33:33 pkg/usr/share/demo/file
tar --numeric-owner -cf demo.tar -C pkg usr
dpkg-deb --root-owner-group --build pkg demo.deb >/dev/null 2>&1 || dpkg-deb --build pkg demo.deb >/dev/null
"""
    sandbox("sh", "-c", script, opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)
    listing = subprocess.run(["tar", "--numeric-owner", "-tvf", str(tmp_path / "demo.tar")], capture_output=True,
                             text=True, check=True).stdout
    assert re.search(r"33/33 .*usr/share/demo/file$", listing, re.M), listing
    assert re.search(r"0/0 .*usr/share/demo/$", listing, re.M), listing
    contents = subprocess.run(["dpkg-deb", "-c", str(tmp_path / "demo.deb")], capture_output=True, text=True,
                              check=True).stdout
    assert re.search(r"root/root .*\./usr/share/demo/file", contents) or "33/33" in contents, contents
    # The chowned files land on the host as subordinate ids; rootsand can remove them again.
    sandbox("rm", "-rf", "pkg", opts=["--profile", "fakeroot"], cwd=tmp_path, check_rc=0)


def test_mounts_inside_do_not_reach_the_host(tmp_path):
    (tmp_path / "dir").mkdir()
    profile = tmp_path / "admin.toml"
    profile.write_text('extends = "default"\n[security]\ncapabilities = ["CAP_SYS_ADMIN"]\n')
    with open("/proc/self/mountinfo") as f:
        before = f.read().count("\n")
    sandbox("sh", "-c", f"mount -t tmpfs none {tmp_path}/dir && touch {tmp_path}/dir/inside",
            opts=["--profile", str(profile)], cwd=tmp_path, check_rc=0)
    with open("/proc/self/mountinfo") as f:
        assert f.read().count("\n") == before
    assert os.listdir(tmp_path / "dir") == []


def test_no_new_privs_false_is_refused(tmp_path):
    profile = tmp_path / "p.toml"
    profile.write_text('extends = "default"\n[security]\nno_new_privs = false\n')
    r = sandbox("true", opts=["--profile", str(profile)], check_rc=125)
    assert "no_new_privs" in r.stderr


def test_rule_file_in_the_writable_directory_is_refused(tmp_path):
    (tmp_path / "rules.toml").write_text('[[rule]]\nsyscall = "uname"\n')
    profile = tmp_path.parent / f"{tmp_path.name}-p.toml"
    profile.write_text(f'extends = "default"\n[security]\nseccomp = "{tmp_path}/rules.toml"\n')
    r = sandbox("true", opts=["--profile", str(profile)], cwd=tmp_path, check_rc=125)
    assert "rule file" in r.stderr and "can write" in r.stderr


def test_seccomp_none_says_so(tmp_path):
    profile = tmp_path.parent / f"{tmp_path.name}-noseccomp.toml"
    profile.write_text('extends = "default"\n[security]\nseccomp = "none"\n')
    r = sandbox("grep", "Seccomp_filters:", "/proc/self/status", opts=["--profile", str(profile)], cwd=tmp_path,
                check_rc=0)
    with open("/proc/self/status") as f:  # a container may have filters of its own: none more than those
        own = next(line for line in f if line.startswith("Seccomp_filters:"))
    assert r.stdout.split() == own.split()
    with_filter = sandbox("grep", "Seccomp_filters:", "/proc/self/status", cwd=tmp_path, check_rc=0)
    assert int(with_filter.stdout.split()[1]) == int(own.split()[1]) + 1
    warnings = [line for line in r.stderr.splitlines() if line.startswith("rootsand: warning:")]
    assert len(warnings) == 1 and "seccomp" in warnings[0] and "debugging" in warnings[0]
