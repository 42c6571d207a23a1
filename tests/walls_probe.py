#!/usr/bin/env python3
"""What a command sees of its sandbox's walls, as JSON on stdout: run inside `rootsand run` and inside an
exported bundle under runc or crun (tests/integration/test_export_engines.py), whose answers must agree.

Its own script inside the sandbox: the standard library only. Writes go to the current directory (a file
named `written-here`), to $HOME (`written-in-home`) and to each path given after --write.
"""

import json
import os
import resource
import socket
import sys


def status(*keys: str) -> dict:
    with open("/proc/self/status") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return {key: fields[key].strip() for key in keys}


def write(path: str):
    """0 when a file can be made at `path`, else the errno."""
    try:
        with open(path, "w") as f:
            f.write("probe\n")
        return 0
    except OSError as e:
        return e.errno


def read(path: str):
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        return e.errno


def main(argv: list[str]) -> int:
    extra = argv[argv.index("--write") + 1:] if "--write" in argv else []
    out = {
        "ids": [os.getuid(), os.getgid()],
        "uid_map": read("/proc/self/uid_map").split(),
        "gid_map": read("/proc/self/gid_map").split(),
        **status("CapEff", "CapPrm", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"),
        "hostname": socket.gethostname(),
        "session leader": os.getsid(0) == os.getpid(),  # new_session: no TIOCSTI-free way into a caller's tty
        "cwd": os.getcwd(),
        "write cwd": write("written-here"),
        "write home": write(os.path.join(os.environ["HOME"], "written-in-home")),
        "write /usr": write("/usr/written-by-probe"),
        "write /etc": write("/etc/written-by-probe"),
        "/proc/keys": read("/proc/keys"),
        "/proc/sys writable": os.access("/proc/sys/kernel/hostname", os.W_OK),
        "interfaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else
        sorted(line.split(":")[0].strip() for line in read("/proc/net/dev").splitlines()[2:]),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "fsize": list(resource.getrlimit(resource.RLIMIT_FSIZE)),
    }
    out.update({f"write {path}": write(path) for path in extra})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
