"""`rootsand inspect`: a running sandbox as its registry entry records it and as /proc and netlink show it
now: its processes, mounts, limits and network interfaces."""

import json
import os

from rootsand.linux import procfs
from rootsand.ops import registry


def inspect(name: str) -> dict:
    entry = registry.find(name)
    info = {"name": name, "pids": {k: entry[k]["pid"] for k in ("launcher", "pid1")},
            "namespaces": entry.get("namespaces", {}), "profile": entry.get("profile"),
            "command": entry.get("command"), "network": {"mode": entry.get("net"), "publish": entry.get("publish"),
                                                         **({"pod": entry["pod"]} if entry.get("pod") else {})}}
    ids = (entry.get("plan") or {}).get("ids") or {}
    for kind in ("uid", "gid"):
        info[f"{kind}_map"] = [list(line) for line in ids.get(f"{kind}_lines", [])]  # as written at the start
    inside = processes_in(entry)
    info["processes"] = inside
    own_view = [p for p in inside if p["mount_ns"] == entry.get("namespaces", {}).get("mount")]
    if own_view:  # not a process of a nested mount namespace, which a sandbox could fill with anything
        info["mounts"] = _mounts(own_view[0]["pid"])
        info["limits"] = procfs.limits(own_view[0]["pid"])
    from rootsand.config.plan import Network
    from rootsand.net.backend import backend_for

    network = Network.from_json((entry.get("plan") or {}).get("network") or {})
    info["network"].update(backend_for(network).inspect(lambda: _interfaces(entry)))
    info["landlock"] = (entry.get("plan") or {}).get("landlock") or {"mode": "off"}  # as the plan put it up
    info["plan"] = entry.get("plan")
    return info


def processes_in(entry: dict) -> list[dict]:
    """The sandbox's processes this user can see (all but PID 1, which is not dumpable), lowest pid first."""
    pid_ns = entry.get("namespaces", {}).get("pid")
    found = []
    for name in procfs.pids():
        spaces = procfs.ns_inodes(name, ("pid", "mnt"))
        if spaces.get("pid") != pid_ns or "mnt" not in spaces:
            continue
        try:
            argv = [a for a in procfs.cmdline(name) if a]
        except OSError:
            continue
        found.append({"pid": int(name), "command": argv, "mount_ns": spaces["mnt"]})
    return sorted(found, key=lambda p: p["pid"])


def _mounts(pid: int) -> list[dict]:
    return [{"destination": fields[4], "type": rest[0], "source": rest[1] if len(rest) > 1 else "",
             "options": fields[5].split(","), "root": fields[3]} for fields, rest in procfs.mountinfo(pid)]


def _interfaces(entry: dict) -> list[dict]:
    """The sandbox's interfaces and addresses, read over netlink from inside its network namespace."""
    from rootsand.ops.exec import join, ns_fds

    fds = ns_fds(entry)
    wanted = {ns: fds.pop(ns) for ns in ("user", "net") if ns in fds}
    for fd in fds.values():
        os.close(fd)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            join(wanted)
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
                found = {name: [] for name in names.values()}
                for addr in ipr.get_addr():
                    found[names.get(addr["index"], "?")].append(f"{addr.get_attr('IFA_ADDRESS')}/{addr['prefixlen']}")
            os.write(write_end, json.dumps([{"name": n, "addresses": a} for n, a in found.items()]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    for fd in wanted.values():
        os.close(fd)
    data = b""
    while chunk := os.read(read_end, 65536):
        data += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    try:
        return json.loads(data or b"[]")
    except ValueError:
        return []
