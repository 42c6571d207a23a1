import os
import signal

from rootsand.errors import RootsandError
from rootsand.runtime import channel, init


def test_exit_status_of_wait_statuses():
    pid = os.fork()
    if pid == 0:
        os._exit(42)
    assert init.exit_status(os.waitpid(pid, 0)[1]) == 42
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(1)
    assert init.exit_status(os.waitpid(pid, 0)[1]) == 143


def test_channel_round_trip():
    r, w = os.pipe()
    reader = channel.Reader(r)
    channel.send(w, stage="unshared")
    channel.send_error(w, RootsandError("boom", hint="fix it", code=127))
    os.close(w)
    messages = []
    while reader.fd is not None:
        messages += reader.read(1)
    assert messages[0] == {"stage": "unshared"}
    err = channel.error_from(messages[1])
    assert (err.message, err.hint, err.code) == ("boom", "fix it", 127)
    assert err.lines() == ["rootsand: error: boom", "rootsand: hint: fix it"]


def test_channel_read_times_out_empty():
    r, w = os.pipe()
    reader = channel.Reader(r)
    assert reader.read(0.01) == []
    os.close(w)
    reader.close()


def test_stale_entries_are_those_of_dead_launchers(tmp_path):
    from rootsand.ops import registry

    for name in ("slirp-999999999.sock", f"slirp-{os.getpid()}.sock", "slirp-x.sock", "other-999999999",
                 "rootsand-999999999"):
        (tmp_path / name).touch()
    assert [os.path.basename(p) for p in registry.stale_entries(str(tmp_path), "slirp")] == ["slirp-999999999.sock"]
    registry.remove_stale(str(tmp_path), "slirp")
    assert sorted(os.listdir(tmp_path)) == sorted(["other-999999999", "rootsand-999999999", "slirp-x.sock",
                                                   f"slirp-{os.getpid()}.sock"])


def test_doctor_reports_apparmors_restriction_with_the_fix(monkeypatch):
    from rootsand.linux import procfs
    from rootsand.ops import doctor

    monkeypatch.setattr(procfs, "read_sysctl", lambda path: "1" if path.endswith("apparmor_restrict_unprivileged_userns")
                        else None)
    check = doctor._apparmor()
    assert check.status == doctor.MISSING and "apparmor_restrict_unprivileged_userns = 1" in check.detail
    assert check.fix.startswith("as root: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")
    monkeypatch.setattr(procfs, "read_sysctl", lambda path: None)
    assert doctor._apparmor().status == doctor.OK


def test_doctor_reports_a_read_only_proc_sys_and_nesting(monkeypatch):
    from rootsand.config import host
    from rootsand.ops import doctor

    monkeypatch.setattr(host, "mounted_with", lambda path, flag: path == "/proc/sys")
    assert doctor._proc_sys().status == doctor.DEGRADED
    monkeypatch.setattr(host, "nesting", lambda: "running inside another user namespace (a sandbox or container)")
    monkeypatch.setattr(host, "facts", lambda net: type("F", (), {"nested_ids": [1001, 1001]})())
    nesting = doctor._nesting()
    assert nesting.status == doctor.DEGRADED and "as 1001:1001 inside" in nesting.detail


def test_the_setuid_clearing_walk_follows_no_link_and_clears_the_users_group_too(tmp_path):
    import stat

    from rootsand.guard.setuidbits import own_files

    top, outside = tmp_path / "top", tmp_path / "outside"
    (top / "sub").mkdir(parents=True)
    outside.mkdir()
    modes = {top / "mine": 0o4755, top / "sub" / "group": 0o2755, top / "plain": 0o755, outside / "far": 0o4755}
    for path, mode in modes.items():
        path.write_text("")
        os.chmod(path, mode)
    os.symlink(outside, top / "link")
    os.symlink(outside / "far", top / "file-link")
    cleared, unchecked = own_files([str(top)], os.getuid(), os.getgid())
    assert (sorted(cleared), unchecked) == ([str(top / "mine"), str(top / "sub" / "group")], [])
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in modes} == {"mine": 0o755, "group": 0o755, "plain": 0o755,
                                                                       "far": 0o4755}
    # the files of another user and group keep their bits
    assert own_files([str(outside)], os.getuid() + 1, os.getgid() + 1) == ([], [])


def test_procfs_reads_a_process_its_namespaces_and_its_mounts():
    from rootsand.linux import procfs

    me = os.getpid()
    assert procfs.parent_of(me) == os.getppid() and procfs.start_time(me) > 0
    assert procfs.start_time(2**22 + 1) is None  # above pid_max: no such process
    assert str(me) in procfs.pids()
    assert procfs.cmdline(me)[-1] == ""  # NUL-ended: the last word is empty
    spaces = procfs.ns_inodes(me, ("net", "mnt", "nonexistent"))
    assert set(spaces) == {"net", "mnt"} and spaces["net"] == os.stat("/proc/self/ns/net").st_ino
    assert procfs.parse_ns("net:[4026531833]") == ("net", 4026531833) and procfs.parse_ns("pipe:[12]") == ("pipe", 12)
    assert procfs.ns_link("/proc/self/exe") is None
    assert any(fields[4] == "/" for fields, _ in procfs.mountinfo())
    assert procfs.limits(me)[0].startswith("Max cpu time")
