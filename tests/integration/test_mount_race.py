"""Finding 3 of the attack, made deterministic: a second sandbox sharing the directory swaps the
destination of a read-only bind for a link at the worst instant, between the opening of the mount point
and the attaching of the mount. The file system code runs for real (user and mount namespace, real
mounts); only the moment of the swap is chosen by the test, through the one call the swap must precede."""

import json
import subprocess
import sys

SCRIPT = r"""
import json, os, sys
from rootsand.config.model import Mount
from rootsand.config.plan import mount_step
from rootsand.linux import libc
from rootsand.runtime.fs.build import FileSystem

source, shared = sys.argv[1], sys.argv[2]
uid, gid = os.getuid(), os.getgid()
libc.unshare(libc.CLONE_NEWUSER | libc.CLONE_NEWNS)
for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
    with open(f"/proc/self/{name}", "w") as f:
        f.write(text)

attach = libc.move_mount
other_sandbox = os.open(shared, os.O_PATH)  # its view of the shared directory (ours gets covered by staging)
def swap_then_attach(tree, target, what=None):
    if what == f"{shared}/ro":  # the mount point is open; now the other sandbox strikes
        os.rename("ro", "ro.moved", src_dir_fd=other_sandbox, dst_dir_fd=other_sandbox)
        os.symlink("other", "ro", dir_fd=other_sandbox)
    return attach(tree, target, what)
libc.move_mount = swap_then_attach

source_ino = os.stat(source).st_ino
steps = [mount_step(m, None) for m in (Mount(type="ro-bind", src="/usr", dst="/usr"),
                                        Mount(type="bind", src=shared, dst=shared),
                                        Mount(type="ro-bind", src=source, dst=f"{shared}/ro"))]
FileSystem(steps, None, (0, 0)).build()
result = {"writes": {}, "source_at": []}
for path in ("ro", "ro.moved", "other"):  # where the source is seen now, and whether read-only
    st, fs = os.stat(f"{shared}/{path}"), os.statvfs(f"{shared}/{path}")
    if st.st_ino == source_ino:
        result["source_at"].append([path, "ro" if fs.f_flag & os.ST_RDONLY else "rw"])
for path in ("ro", "ro.moved", "other"):
    try:
        with open(f"{shared}/{path}/probe", "w") as f:
            f.write("x")
        result["writes"][path] = "written"
    except OSError as e:
        result["writes"][path] = e.strerror
print(json.dumps(result))
"""


def test_a_destination_swapped_between_open_and_attach_gets_a_read_only_mount(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    shared = tmp_path / "shared"
    (shared / "ro").mkdir(parents=True)
    (shared / "other").mkdir()
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(source), str(shared)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # The bind went where the mount point was opened (the directory now called ro.moved), read-only ...
    assert result["source_at"] == [["ro.moved", "ro"]]
    assert result["writes"]["ro.moved"] == "Read-only file system"
    # ... and the link the attacker put in its place leads to a plain directory, not to the source.
    assert result["writes"]["ro"] == "written" and result["writes"]["other"] == "written"
    assert list(source.iterdir()) == []
