"""The plan as the runtime carries it out: `run --dry-run` against what a real run mounts, errors that name
the option that asked, arguments that belong to the command, and the status file's namespaces."""

import json
import os

import pytest

from conftest import run, sandbox


def mountinfo(text: str) -> dict[str, set[str]]:
    """Mount point -> its per-mount options, from /proc/self/mountinfo."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        out[fields[4]] = set(fields[5].split(","))
    return out


@pytest.mark.parametrize("profile", ["default", "build", "untrusted", "net"])
def test_dry_run_prints_the_plan_that_run_carries_out(tmp_path, profile):
    dry = run(["run", "--dry-run", "--profile", profile, "--", "cat", "/proc/self/mountinfo"], cwd=tmp_path,
              check_rc=0)
    planned = json.loads(dry.stdout)
    assert planned["argv"] == ["cat", "/proc/self/mountinfo"] and planned["profile"] == profile
    real = sandbox("cat", "/proc/self/mountinfo", opts=["--profile", profile], cwd=tmp_path, check_rc=0)
    seen = mountinfo(real.stdout)
    for step in planned["mounts"]:
        if step["type"] in ("symlink", "dir", "file"):
            continue
        if step["optional"] and not all(os.path.exists(p) for p in [step["src"] or "/", *step["lower"]]):
            assert step["dst"] not in seen  # skipped, as planned
            continue
        assert step["dst"] in seen, (step, sorted(seen))
        flags = set(step["flags"]) & {"ro", "nosuid", "nodev", "noexec"}
        assert flags <= seen[step["dst"]], (step["dst"], flags, seen[step["dst"]])
        if "ro" not in step["flags"]:
            assert "rw" in seen[step["dst"]], step["dst"]
    for name in planned["etc_files"]:
        assert "ro" in seen[f"/etc/{name}"]
    assert "ro" in seen["/"]


def test_dry_run_verbose_lists_each_mount_with_its_origin(tmp_path):
    r = run(["run", "--dry-run", "-v", "--bind", "/etc/hostname:/x", "--", "true"], cwd=tmp_path, check_rc=0)
    json.loads(r.stdout)  # stdout stays machine-readable
    listing = r.stderr.splitlines()
    assert listing[0] == f"sandbox {json.loads(r.stdout)['name']} (profile default): true"
    assert any(line.split()[:4] == ["bind", "/x", "<-", "/etc/hostname"] and line.endswith("[--bind /etc/hostname:/x]")
               for line in listing), listing
    assert any("/usr" in line and "ro,nosuid,nodev" in line and "default.toml, line" in line for line in listing)


def test_dry_run_of_an_impossible_plan_is_the_usual_error(tmp_path):
    r = run(["run", "--dry-run", "--user", "999999", "--", "true"], cwd=tmp_path, check_rc=125)
    assert r.stdout == ""
    assert r.stderr.startswith("rootsand: error: user 999999:999999 is not mapped in the sandbox")


@pytest.mark.parametrize("option,message", [
    (["--bind", "/etc/hostname:/usr"], "--bind /etc/hostname:/usr: /usr is a directory and /etc/hostname is not"),
    (["--ro-bind", "/usr:/etc/hostname"], "--ro-bind /usr:/etc/hostname: /usr is a directory and /etc/hostname is not"),
    (["--bind", "/nonexistent-x:/x"], "--bind /nonexistent-x:/x: /nonexistent-x does not exist"),
    (["--ro-bind", "/etc/hostname:/etc/hostname/sub"],
     "--ro-bind /etc/hostname:/etc/hostname/sub: cannot create the mount point /etc/hostname/sub in the sandbox: "
     "/etc/hostname is not a directory"),
    (["--overlay", "/nonexistent-y:/y"], "--overlay /nonexistent-y:/y: /nonexistent-y does not exist"),
    (["--bind", "/etc:/"], "--bind /etc:/: cannot mount over / (use --rootfs for another root)"),
])
def test_a_bad_mount_is_one_error_line_naming_its_option(tmp_path, option, message):
    r = sandbox("true", opts=option, cwd=tmp_path, check_rc=125)
    lines = r.stderr.splitlines()
    assert lines[0] == f"rootsand: error: {message}"
    assert all(line.startswith("rootsand: hint: ") for line in lines[1:]) and len(lines) <= 2
    assert "/tmp/root" not in r.stderr  # never a staging path


def test_debug_after_the_command_is_the_commands(tmp_path):
    r = sandbox("sh", "-c", 'echo "$@"', "x", "--debug", cwd=tmp_path, check_rc=0)
    assert r.stdout == "--debug\n"
    assert r.stderr == ""  # rootsand's own --debug would print its stages


def test_the_status_file_always_names_every_namespace(tmp_path):
    status = tmp_path / "status.json"
    names = {"user", "mount", "uts", "ipc", "net", "cgroup", "pid"}
    for i in range(200):
        sandbox("sh", "-c", "exit 5", opts=["--json-status", str(status)], cwd=tmp_path, check_rc=5)
        first, last = [json.loads(line) for line in status.read_text().splitlines()]
        assert set(first["namespaces"]) == names, (i, first)
        assert all(isinstance(v, int) and v > 0 for v in first["namespaces"].values())
        assert last == {"exit-code": 5}


def test_the_status_file_has_the_time_namespace_when_there_is_one(tmp_path):
    profile = tmp_path / "time.toml"
    profile.write_text('extends = "default"\n[sandbox]\n'
                       'namespaces = ["user", "pid", "mount", "uts", "ipc", "net", "cgroup", "time"]\n')
    status = tmp_path / "status.json"
    r = sandbox("readlink", "/proc/self/ns/time", "/proc/self/ns/pid", opts=["-p", str(profile), "--json-status",
                                                                             str(status)], cwd=tmp_path, check_rc=0)
    first = json.loads(status.read_text().splitlines()[0])
    assert r.stdout.split() == [f"time:[{first['namespaces']['time']}]", f"pid:[{first['namespaces']['pid']}]"]


def test_dry_run_shows_the_plan_resolved_against_this_host(tmp_path):
    """--dry-run prints what the launcher carries out: host paths with their links resolved, /proc's kind, the
    host directories the sandbox can write (issue 19: the plan is the whole truth)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # not where the sandbox writes, so followed
    (tmp_path / "work").mkdir()
    r = run(["run", "--dry-run", "--ro-bind", f"{tmp_path}/link:/data", "--", "true"], cwd=tmp_path / "work",
            check_rc=0)
    planned = json.loads(r.stdout)
    resolved = planned["resolved"]
    asked = [s for s in planned["mounts"] if s["dst"] == "/data"]
    carried = [s for s in resolved["mounts"] if s["dst"] == "/data"]
    assert [s["src"] for s in asked] == [f"{tmp_path}/link"] and [s["src"] for s in carried] == [f"{tmp_path}/real"]
    assert [s["kind"] for s in resolved["mounts"] if s["type"] == "proc"] == ["new-or-outer"]
    assert resolved["writable"] == [str(tmp_path / "work")] and resolved["warnings"] == []


@pytest.mark.parametrize("mount,message", [
    ('type = "ro-bind"\nsrc = "{missing}"\ndst = "/m"', "{missing} does not exist"),
    ('type = "overlay"\nlower = ["/usr", "{missing}"]\ndst = "/o"', "{missing} does not exist"),
    ('type = "overlay"\nlower = ["/usr"]\nupper = "{missing}/up"\ndst = "/o"',
     "overlay upper directory {missing}/up: neither it nor its parent exists"),
])
def test_a_profiles_missing_host_path_is_found_before_anything_runs(tmp_path, mount, message):
    """Checked where the sandbox runs (runtime/hostprep.py), by --dry-run as by a run, naming the profile's
    file and line; optional = true skips the mount instead."""
    missing = str(tmp_path / "missing")
    profile = tmp_path / "p.toml"
    profile.write_text(f'extends = "default"\n\n[[mount]]\n{mount.format(missing=missing)}\n')
    for args in (["run", "--dry-run"], ["run"]):
        r = run([*args, "--profile", str(profile), "--", "true"], cwd=tmp_path, check_rc=125)
        lines = r.stderr.splitlines()
        assert lines[0] == f"rootsand: error: profile {profile}, line 3: {message.format(missing=missing)}", lines
        assert r.stdout == ""
    profile.write_text(profile.read_text() + "optional = true\n")
    run(["run", "--profile", str(profile), "--", "true"], cwd=tmp_path, check_rc=0)


@pytest.mark.parametrize("mount,dst", [('type = "ro-bind"\nsrc = "{missing}"\ndst = "/m"', "/m"),
                                       ('type = "overlay"\nlower = ["/usr", "{missing}"]\ndst = "/o"', "/o")])
def test_dry_run_marks_an_absent_optional_mount_as_skipped(tmp_path, mount, dst):
    """--dry-run -v listed an optional mount whose host path is missing as if it were bound."""
    profile = tmp_path / "p.toml"
    profile.write_text(f'extends = "default"\n\n[[mount]]\n{mount.format(missing=tmp_path / "missing")}\n'
                       'optional = true\n')
    r = run(["run", "--dry-run", "-v", "--profile", str(profile), "--", "true"], cwd=tmp_path, check_rc=0)
    listed = [line for line in r.stderr.splitlines() if f" {dst} " in line]
    assert len(listed) == 1 and "(optional, absent: skipped)" in listed[0], listed
    assert [s["kind"] for s in json.loads(r.stdout)["resolved"]["mounts"] if s["dst"] == dst] == ["absent"]
    present = [line for line in r.stderr.splitlines() if " /usr " in line]
    assert present and not any("absent" in line for line in present)
    inside = sandbox("sh", "-c", f"test -e {dst} && echo there || echo absent", opts=["--profile", str(profile)],
                     cwd=tmp_path, check_rc=0)
    assert inside.stdout == "absent\n"
