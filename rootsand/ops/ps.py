"""`rootsand ps` and `rootsand stop`: the running sandboxes of the registry (registry.py), and ending them.
Every pid is checked against its recorded start time before it is signalled."""

import json
import os
import select
import signal
import sys
import time

from rootsand.errors import RootsandError
from rootsand.ops import registry


def age(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def ps_rows(show_all: bool = False) -> list[dict]:
    """The sandboxes by name. "pid" is the launcher's, the process to signal (rootsand stop does: it passes
    signals on); "pid1" the sandbox's PID 1 on the host. `show_all`: also those still starting, and the
    detached ones that have ended ("exited", with "exit_code" and "ended") or whose launcher was killed."""
    now = time.time()
    rows = []
    detached = {record["name"]: record for record in registry.detached_records()}
    for entry in registry.entries():
        if entry.get("status") != "running" and not show_all:
            continue
        rows.append({"name": entry["name"], "pid": entry["launcher"]["pid"], "pid1": entry.get("pid1", {}).get("pid"),
                     "profile": entry.get("profile"), "command": entry.get("command", []),
                     "net": f"pod:{entry['pod']}" if entry.get("pod") else entry.get("net"), "pod": entry.get("pod"),
                     "age_seconds": round(now - entry.get("created", now), 3), "status": entry.get("status"),
                     "launcher": entry["launcher"]["pid"], "detached": entry["name"] in detached})
    listed = {row["name"] for row in rows}
    for name, record in detached.items() if show_all else ():
        if name in listed:
            continue  # running: its registry entry is above
        state = record["state"]
        if state == "running":  # its launcher runs, without a registry entry yet or any more: listed all the same
            state = record.get("status", "running")
        launcher = record.get("launcher", {}).get("pid") if record["state"] == "running" else None
        rows.append({"name": name, "pid": launcher, "pid1": None, "profile": record.get("profile"),
                     "net": record.get("net"), "command": record.get("command", []),
                     "age_seconds": round(now - record.get("created", now), 3), "status": state,
                     "launcher": launcher, "detached": True, "exit_code": record.get("exit_code"),
                     "ended": record.get("ended")})
    return sorted(rows, key=lambda row: row["name"])


def _status(row: dict) -> str:
    if row["status"] == "exited":
        return f"exited({row['exit_code']}) {age(time.time() - (row.get('ended') or time.time()))} ago"
    if row["status"] == "killed":
        return "killed (its launcher was killed)"
    return str(row["status"])


def ps_table(rows: list[dict]) -> str:
    from rootsand.errors import printable

    header = ("NAME", "PID", "PROFILE", "NET", "AGE", "STATUS", "COMMAND")
    table = [header] + [(r["name"], str(r["pid"] or "-"), str(r["profile"]), str(r["net"]), age(r["age_seconds"]),
                         _status(r), printable(" ".join(r["command"]))) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def _wait_gone(fd: int, seconds: float) -> bool:
    return bool(select.select([fd], [], [], seconds)[0])


def stop(name: str, grace: float = 10.0) -> None:
    """SIGTERM to the command (the launcher passes it to PID 1, which passes it on), SIGKILL of the whole
    sandbox after `grace` seconds; returns once the sandbox is gone. A sandbox whose launcher was killed is
    gone already: what that launcher left undone is done now (as `rootsand cleanup` does), then it is no
    sandbox that runs."""
    from rootsand.guard import leftovers

    leftovers.retire(registry.entry_path(name))
    entry = registry.find(name)
    launcher = registry.pidfd_of(entry["launcher"])
    if launcher is None:
        raise RootsandError(f"no sandbox named {name} is running")
    try:
        signal.pidfd_send_signal(launcher, signal.SIGTERM)
        if _wait_gone(launcher, grace):
            return
        pid1 = registry.pidfd_of(entry.get("pid1", {}))
        if pid1 is not None:  # PID 1's death takes everything in its PID namespace with it
            try:
                signal.pidfd_send_signal(pid1, signal.SIGKILL)
            finally:
                os.close(pid1)
        if not _wait_gone(launcher, 10):
            signal.pidfd_send_signal(launcher, signal.SIGKILL)
            _wait_gone(launcher, 10)
    except ProcessLookupError:
        pass
    finally:
        os.close(launcher)


def print_json(data) -> None:
    """--json of ps, inspect and ns list: indented, one value."""
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
