"""The plan stage: a SandboxSpec and the facts of this host in, a complete, immutable Plan out.

plan() is pure: no system calls, no files, no processes, no cgroups. Everything the runtime does is decided
here and written down: the id maps and who runs the command, the namespaces, every mount step in order
with its final flags and origin, the generated /etc files, the network, capabilities, the seccomp rules
as data, limits, sysctls, environment, argv, working directory and timeout. A Plan converts to JSON and
back without loss: `run --dry-run` prints it, the registry of running sandboxes stores it.

The runtime only carries a Plan out (runtime/hostprep.py resolves it against the host first; launcher.py,
inside.py and fs/ follow it); how (file descriptors, pids, a pty) is its own business.
"""

import os

from rootsand.config import idmap
from rootsand.config.homerule import HomeGuard, plan_home, read_only_reason
from rootsand.config.model import CAPABILITIES, Mount, PortForward, Record
from rootsand.config.netmodes import AUTO, MODES
from rootsand.errors import RootsandError
from rootsand.guard.hostpaths import is_below
from rootsand.security import landlockrules, limits
from rootsand.security.seccomp.rules import HostArch, Rule

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")
# What podman and flatpak hide in /proc: the user's keyrings, kernel memory and timing side channels.
PROC_MASKED_FILES = ("keys", "key-users", "kcore", "timer_list", "timer_stats", "sched_debug", "latency_stats")
PROC_MASKED_DIRS = ("acpi", "scsi")
SHM_MAX = 64 << 20  # the largest SysV segment where no memory cgroup counts them
PTS_MAX = 64  # ptys one sandbox may open
INOTIFY_SHARE = 8  # a sandbox with limits gets 1/8 of the user's inotify instances and watches
# The flags each mount type ends up with. "ro" on dev is set once its mount points are made.
MOUNT_FLAGS = {
    "bind": ("nosuid", "nodev"), "ro-bind": ("ro", "nosuid", "nodev"), "dev-bind": ("nosuid",),
    "tmpfs": ("nosuid", "nodev"), "proc": ("nosuid", "nodev", "noexec"), "dev": ("ro", "nosuid", "noexec"),
    "mqueue": ("nosuid", "nodev", "noexec"), "overlay": ("nosuid", "nodev"),
    "symlink": (), "dir": (), "file": (),
}


class HostFacts(Record):
    """What planning needs to know about this host and user, gathered by host.facts()."""

    FIELDS = {
        "uid": 0, "gid": 0, "pid": 0,  # pid: the launcher's, for the generated name
        "subuids": list, "subgids": list,  # SubidRange
        "newuidmap": None, "newgidmap": None,  # the helpers' paths, when found
        "cgroup_dir": None, "cgroup_controllers": list,  # a delegated cgroup v2 and what a child of it can use
        "resolv_conf": "",  # the host's /etc/resolv.conf
        "inotify_instances": None, "inotify_watches": None,  # the per-user limits of the host
        "page_size": 4096, "last_cap": 40,
        "nested": None,  # why only one id can be mapped: inside a user namespace, no_new_privs set
        "nested_ids": None,  # then, [uid, gid] to map ourselves to where 0 cannot be (no CAP_SETFCAP)
        "arch": HostArch,  # what the seccomp rules depend on in the architecture
        "data_limit_ignored": False,  # the kernel does not enforce RLIMIT_DATA (ignore_rlimit_data)
        "net_auto": None,  # what network mode `auto` is here (netmodes.auto_mode); None: slirp
        "pod_hosts": None,  # run --pod: the pod's hosts file, every member's /etc/hosts (net/pod.py)
    }
    __slots__ = tuple(FIELDS)
    NESTED = {"subuids": idmap.SubidRange, "subgids": idmap.SubidRange, "arch": HostArch}


class MountStep(Record):
    """One mount op as the runtime carries it out: what, where, with which final flags, and who asked."""

    FIELDS = {
        "type": "", "dst": "", "src": None, "lower": list, "upper": "tmpfs", "optional": False,
        "create": None,  # a bind's missing source directory is made: True, or a program that must be on PATH
        "flags": list,  # of ro, nosuid, nodev, noexec
        "options": dict,  # file system options: mode, size (tmpfs, dev's /dev/shm, a tmpfs overlay upper)
        "mode": None, "content": "",  # dir and file ops
        "nodes": list,  # dev: the host device nodes bound
        "read_only": list, "masked": list,  # proc: what is made read-only, what is hidden
        # decided against the host (runtime/hostprep.py), in the resolved plan only: an overlay's "kernel",
        # "fuse" or "read-only" (its lower dir, when the overlay cannot be had); proc's "new-or-outer" (the
        # outer /proc where the kernel refuses a new one, with a warning); "absent" for an optional mount
        # whose host path is not there (skipped); "own-runtime-dir" for the tmpfs over a runtime directory of
        # rootsand's that a mount shows (hostprep.hide_runtime_dirs), mounted after the protected paths
        "kind": "",
        "origin": "",
        # bwrap's ops (config/bwrap.py): dir, file, symlink and chmod act wherever the path leads, the user's
        # files included (asked for on the command line), and missing parents are made with this mode
        "on_host": False, "parents": None,
        # an overlay's work dir where it is given (bwrap's --overlay), else a hidden sibling of its upper dir;
        # upper = "none": a read-only overlay of the lower dirs alone (bwrap's --ro-overlay)
        "work": None,
    }
    __slots__ = tuple(FIELDS)


class Protected(Record):
    """A path kept read-only inside a writable bind of the user's directory (security.protect). Whether it
    exists is the runtime's business: an existing one is bound read-only onto itself, an absent one is
    made (empty, a directory when `directory`) and bound so, and removed at exit."""

    FIELDS = {
        "mount": 0,  # index of the bind in Plan.mounts
        "path": "",  # relative to the bind's root
        "dst": "",  # where it is inside
        "directory": False,  # made as a directory when absent
        "entry": "",  # as the profile wrote it, for --unprotect
        # absent: made empty and read-only for the run (else left absent, and what the run makes there is
        # moved aside after it: security.placeholders)
        "placeholder": False,
        # rootsand's own configuration or state: read-only inside, but rootsand itself writes it during the
        # run (its registry, its key), so no change of it is held against the sandbox
        "own": False,
    }
    __slots__ = tuple(FIELDS)


class Hidden(Record):
    """Where security.hide applies: the files below a writable bind that match a pattern when the sandbox
    starts read as empty for the run (runtime/fs/hide.py)."""

    FIELDS = {
        "mount": 0,  # index of the bind in Plan.mounts
        "dst": "",  # its root inside
        "patterns": list,  # relative to dst (model.parse_hide_entry)
        "shown": list,  # paths relative to dst that --unhide shows, with all below them
    }
    __slots__ = tuple(FIELDS)


class Handover(Record):
    """What the launcher hands over to the user once the sandbox is gone (guard/handover.py).

    top: the directory the run started in, when the command runs as an id that is not the user's on the host
    (the fakeroot profile's root): the regular files at its top that the run made as that id become the
    user's; what lies below keeps the owners the build gave it.
    staging: the parent of the current directory inside is this host directory, made by the launcher for the
    run beside the current directory, holding only its mount point (`mount_point`) and bound by mounts[mount]:
    the regular files at its top whose names match `keep` are carried to `parent` on the host, made the
    user's; anything else written there is removed, and named."""

    FIELDS = {
        "top": None,
        "staging": None, "parent": None, "mount": None, "mount_point": "", "keep": list,
    }
    __slots__ = tuple(FIELDS)


STAGING_PREFIX = ".rootsand-staging."  # + the sandbox's name: the staging directory in the host's parent


def handover(spec, mounts: list, name: str, runs_as_user: bool) -> tuple[list, "Handover | None"]:
    """The mounts with the staging bind put in before the current directory's (which it holds), and the
    Handover, or None when there is nothing to hand over. Staging only where the command starts in the
    current directory and a bind of it is there to hold (not --rootfs, not --chdir elsewhere, not run from /)."""
    top = None if runs_as_user else spec.cwd
    parent = os.path.dirname(spec.cwd)
    index = next((i for i, m in enumerate(mounts) if m.type == "bind" and m.src == spec.cwd and m.dst == spec.cwd),
                 None)
    if not spec.parent_products or spec.rootfs or spec.chdir != spec.cwd or parent == "/" or index is None:
        return mounts, Handover(top=top) if top else None
    if read_only_reason(parent, spec):
        # The home rule judges the parent on its own: an exception for the current directory (--unprotect of a
        # package in a dot-directory) is not one for the directory holding it (attack 6, s03)
        return mounts, Handover(top=top) if top else None
    from rootsand.config.model import Mount

    staging = os.path.join(parent, STAGING_PREFIX + name)
    step = Mount(type="bind", src=staging, dst=parent,
                 origin="[sandbox] parent_products: the parent of the current directory, staged")
    return mounts[:index] + [step] + mounts[index:], Handover(
        top=top, staging=staging, parent=parent, mount=index, mount_point=os.path.basename(spec.cwd),
        keep=list(spec.parent_products))


class Resolved(Record):
    """The plan against this host (runtime/hostprep.py): what the setup process and PID 1 carry out as it is,
    deciding nothing, and what the launcher checks after the run. --dry-run prints it."""

    FIELDS = {
        "mounts": list,  # MountStep: the plan's, host paths resolved and checked, each kind decided
        "rootfs": None,  # --rootfs, resolved
        "writable": list,  # the host directories the sandbox can write, resolved
        # security.protect on the host: {"covered", "made", "pinned", "absent"} (hostprep.protected_nodes)
        "protect": None,
        "audit": None,  # the git check after the run: {"tops", "known", "names"}, or None
        "setuid_tops": list,  # where setuid bits set inside are cleared at exit
        "handover": None,  # Handover with its host paths resolved
        "notes": list,  # decisions said with -v (an optional overlay without fuse-overlayfs)
        "warnings": list,  # decisions always said (the outer /proc, an overlay read-only instead)
        "made": list,  # bind sources absent on the host, made (the user's, 0700) before the sandbox is built
    }
    __slots__ = tuple(FIELDS)
    NESTED = {"mounts": MountStep, "handover": Handover}


class Network(Record):
    FIELDS = {
        "mode": "none",  # a name of netmodes.MODES, whose entry says what the fields below take
        "allow_host_loopback": False,
        "publish": list,  # PortForward
        "resolv_conf": None,  # the sandbox's /etc/resolv.conf, for a mode with a DNS forwarder of its own
        "address": None, "gateway": None, "dns": None, "interface": None,  # the mode's, inside (address/prefix)
        "slirp_sandbox": True,  # the mode's helper in a mount namespace of its own (not possible when nested)
        # proxy: the hosts the proxy lets through (allowlist.py), its endpoint on the sandbox's 127.0.0.1,
        # and how long a client may take to send its request head
        "allow": list, "deny": list, "proxy_port": None, "header_timeout": None,
        "pod": None, "member": None,  # pod: the pod's name, and the sandbox's there (its name)
    }
    __slots__ = tuple(FIELDS)
    NESTED = {"publish": PortForward}


class Plan(Record):
    """Everything a sandbox is, decided; the runtime's only input."""

    FIELDS = {
        "name": "", "profile": "", "argv": list, "env": dict, "chdir": "/", "cwd": "/", "hostname": "",
        "argv_fallback": list,  # run when argv's program is not in the sandbox (the default: $SHELL, else /bin/sh)
        "homes": list,  # the user's home directories, which no link planted by a sandbox may lead into
        "timeout": None, "memory": None,  # the profile's memory limit, however limits enforce it
        "user": "root",  # root | keep-id | ids
        "run_uid": 0, "run_gid": 0,  # the command's ids inside
        # the ids inside that are the user's on the host: setup makes its mount points and work directories
        # among the user's files as them (with keep-id maps root inside is a subordinate id)
        "setup_uid": 0, "setup_gid": 0,
        "ids": idmap.IdPlan,  # the maps and how they are written
        "namespaces": list, "time_offsets": dict,
        "rootfs": None,  # a host directory as the root, else an empty read-only tmpfs
        "mounts": list,  # MountStep, in order
        "writable": list,  # the host directories the sandbox can write, as asked (resolved: Resolved.writable)
        "home_guards": list,  # homerule.HomeGuard: homes shown by writable binds, their top read-only
        "protected": list,  # Protected: applied after the mounts and the home guards, on top of them
        "hidden": list,  # Hidden: applied after the protected paths
        "etc_files": dict,  # /etc/NAME -> content, bound read-only over the host's
        "network": Network,
        "capabilities": list,  # names the command keeps
        "no_new_privs": True, "new_session": True, "nested_userns": False,
        "tty": False,  # --tty: the command's stdin, stdout and stderr are a pty, terminals or not
        "setuid_bits": False,  # chmod u+s/g+s allowed inside; what is the user's is cleared at exit
        "handover": None,  # Handover: what the launcher gives the user after the run
        "seccomp": None,  # list of Rule, or None for no filter
        "compat_syscalls": True,  # False: calls through a 32-bit ABI kill the thread
        "landlock": landlockrules.Ruleset,  # the second wall, derived from the mounts (installed before seccomp)
        "limits": limits.Limits,
        "cgroup_parent": None,  # where the launcher makes the sandbox's cgroup, when limits.cgroup says so
        "sysctls": dict,  # written through the sandbox's own procfs
        "notes": list,  # said once on stderr before the sandbox starts
        "resolved": None,  # Resolved: filled in by runtime/hostprep.py, before anything runs
        # bwrap's front end (config/bwrap.py): the directories tried in order when chdir is not there, $PWD set
        # to where the command starts, argv[0] other than the program's name, the command as PID 1 itself,
        # killed with the launcher, the files PID 1 holds a read lock on while the sandbox runs
        "chdir_else": list, "set_pwd": False, "argv0": None, "as_pid_1": False, "die_with_parent": False,
        "lock_files": list,
        # bwrap's --disable-userns: the command in a user namespace of its own below the sandbox's, whose limit
        # of one user namespace (sysctls) it cannot raise from there, root or not
        "userns_layer": False,
        "seccomp_bpf": list,  # bwrap: compiled BPF programs (hex) loaded last, after rootsand's own filter
        "block_fd": None,  # bwrap: the command waits for data (or end of file) on this fd of the caller's
        "keep_fds": list,  # bwrap: the caller's descriptors (beyond 0-2) that reach the command, as they are
    }
    __slots__ = tuple(FIELDS)
    NESTED = {"ids": idmap.IdPlan, "mounts": MountStep, "home_guards": HomeGuard, "protected": Protected,
              "hidden": Hidden, "network": Network, "seccomp": Rule, "limits": limits.Limits, "resolved": Resolved,
              "handover": Handover, "landlock": landlockrules.Ruleset}

    @property
    def root_mapped(self) -> bool:
        return idmap.mapped(self.ids.uid_lines, 0) and idmap.mapped(self.ids.gid_lines, 0)

    @property
    def capability_mask(self) -> int:
        mask = 0
        for name in self.capabilities:
            mask |= 1 << CAPABILITIES.index(name)
        return mask



def plan(spec, facts: HostFacts) -> Plan:
    """The Plan for `spec` on a host with these facts. Pure; RootsandError when it cannot be made."""
    if spec.net_mode == "auto":
        spec = spec.replace(net_mode=facts.net_auto or AUTO[-1])
    # keep-id maps: the user is itself inside, every other id (root too) a subordinate one (idmap = "keep-id"
    # with user root: what root makes, setuid programs included, never belongs to the user on the host).
    keep_id = spec.user.mode == "keep-id" or spec.idmap == "keep-id"
    ids = idmap.plan(facts.uid, facts.gid, facts.subuids, facts.subgids, facts.newuidmap, facts.newgidmap,
                     keep_id=keep_id, single=spec.idmap == "single", nested=facts.nested,
                     inside_ids=tuple(facts.nested_ids) if facts.nested_ids else None)
    root_mapped = idmap.mapped(ids.uid_lines, 0) and idmap.mapped(ids.gid_lines, 0)
    if spec.user.mode == "root":  # root where it is mapped, else the one id there is
        run_ids = (0, 0) if root_mapped else (ids.uid_lines[0][0], ids.gid_lines[0][0])
    elif spec.user.mode == "keep-id":
        run_ids = (facts.uid, facts.gid)
    else:
        run_ids = (spec.user.uid, spec.user.gid)
    if not idmap.mapped(ids.uid_lines, run_ids[0]) or not idmap.mapped(ids.gid_lines, run_ids[1]):
        top = max(inside + count for inside, _, count in ids.uid_lines) - 1
        raise RootsandError(f"user {run_ids[0]}:{run_ids[1]} is not mapped in the sandbox (ids 0-{top} are)",
                            hint="use --user root, keep-id or an id in that range")

    the_limits = limits.plan_limits(spec.memory, spec.pids, spec.cpu, spec.rlimits, set(facts.cgroup_controllers),
                                    facts.data_limit_ignored)
    uncounted = spec.memory is not None and "memory.max" not in the_limits.cgroup
    notes = ([ids.note] if ids.note else []) + list(spec.notes)
    mounts, home_guards, rule_protected, home_notes = plan_home(spec, spec.mounts)
    notes += home_notes
    name = spec.name or f"sandbox-{facts.pid}"
    setup_ids = (idmap.inside_of(ids.uid_lines, facts.uid), idmap.inside_of(ids.gid_lines, facts.gid))
    mounts, the_handover = handover(spec, mounts, name, run_ids[0] == setup_ids[0])
    staged = the_handover.mount if the_handover and the_handover.staging else None
    if spec.pod:  # last, so no index above shifts: every member's /etc/hosts, kept current by the pod
        mounts = mounts + [Mount(type="ro-bind", src=facts.pod_hosts, dst="/etc/hosts", origin="--pod")]
    if staged is not None:  # the staging bind comes before the current directory's: later indices shift
        home_guards = [g.replace(mount=g.mount + 1) if g.mount >= staged else g for g in home_guards]
        rule_protected = [{**item, "mount": item["mount"] + 1} if item["mount"] >= staged else item
                          for item in rule_protected]
    from rootsand.security.seccomp.rules import rules_for

    rules = rules_for(spec.seccomp, spec.nested_userns, file_rules=spec.seccomp_file_rules, net_mode=spec.net_mode,
                      setuid_bits=spec.setuid_bits, socket_families=tuple(spec.socket_families),
                      limit_memfd=uncounted, shm_max=min(SHM_MAX, spec.memory) if uncounted else None,
                      shared_map_max=spec.memory if uncounted else None,
                      arch=facts.arch)
    if rules is None:
        notes.append('the seccomp filter is off (security.seccomp = "none"): for debugging only')
    network = _network(spec, facts)
    if network.pod:
        network = network.replace(member=name)
    env = dict(spec.env)
    if network.proxy_port is not None:
        env.update(proxy_env(network.proxy_port))
    udp_note = MODES[network.mode].loopback_udp_note
    if udp_note and not network.allow_host_loopback and any(
            f.proto == "udp" and f.host_addr.startswith(("127.", "::1")) for f in network.publish):
        notes.append(udp_note)
    udp_note = MODES[network.mode].udp_translation_note
    if udp_note and any(f.proto == "udp" and f.host_port != f.guest_port for f in network.publish):
        notes.append(udp_note)
    etc_files = {"hostname": f"{spec.hostname}\n", "hosts": hosts_file(spec.hostname)}
    if network.pod:  # the members' names, kept current by the pod's keeper: its file bound, not a copy
        if keep_id or not root_mapped:
            raise RootsandError("--pod: a pod's members share its id map (root, then your subordinate ids): "
                                "keep-id and single-id maps cannot join it")
        if "pid" not in spec.namespaces:  # the pod's user namespace owns its holder's and the other members'
            raise RootsandError("--pod needs the pid namespace, which the profile's sandbox.namespaces leaves "
                                "out: a member that saw the host's processes could join the pod's network "
                                "namespaces (it has root's powers over them)")
        del etc_files["hosts"]
    if network.resolv_conf is not None:
        etc_files["resolv.conf"] = network.resolv_conf
    capabilities = list(CAPABILITIES[:facts.last_cap + 1]) if spec.capabilities == "all" else list(spec.capabilities)
    caches = [os.path.join(h, w[2:]) for h in spec.homes for w in spec.home_writable]
    if len(ids.uid_lines) == 1 and "CAP_CHOWN" in capabilities:  # one id: every chown to another fails
        # Said before the run, as a fact of this sandbox: rootsand cannot tell which failure it causes.
        chown_note = (f"{ids.note or 'idmap = single: the sandbox maps only your own id'}: chown to any other id "
                      "fails with 'Invalid argument'")
        notes = [chown_note] + notes[1 if ids.note else 0:]
    steps = [mount_step(m, spec.memory) for m in mounts]
    return Plan(
        name=name, profile=spec.profile, argv=list(spec.command), argv_fallback=list(spec.command_fallback), env=env,
        chdir=spec.chdir, cwd=spec.cwd, hostname=spec.hostname, homes=list(spec.homes), timeout=spec.timeout,
        memory=spec.memory,
        user=spec.user.mode, run_uid=run_ids[0], run_gid=run_ids[1], ids=ids,
        setup_uid=setup_ids[0], setup_gid=setup_ids[1],
        namespaces=list(spec.namespaces), time_offsets=dict(spec.time_offsets),
        rootfs=spec.rootfs, mounts=steps, home_guards=home_guards,
        writable=writable_sources(mounts),
        protected=protected_paths(mounts, spec.protect, spec.cwd, spec.homes, spec.placeholders, caches, staged)
        + [Protected(**item) for item in rule_protected],
        hidden=hidden_paths(mounts, spec.hide, spec.unhide, caches, staged), etc_files=etc_files,
        network=network, capabilities=capabilities, new_session=spec.new_session, tty=spec.tty,
        nested_userns=spec.nested_userns,
        setuid_bits=spec.setuid_bits, handover=the_handover,
        seccomp=rules, compat_syscalls=spec.compat_syscalls,
        landlock=landlockrules.ruleset(spec.landlock, steps, spec.rootfs, home_guards, spec.landlock_revoked),
        limits=the_limits, cgroup_parent=facts.cgroup_dir if the_limits.cgroup else None,
        sysctls=sandbox_sysctls(spec.nested_userns, the_limits, spec.memory, facts), notes=notes,
    )


def writable_sources(mounts: list) -> list[str]:
    """The host directories a sandbox with these mounts can write, as written (and so where one like it may
    have planted links): read-write binds (the current directory's among them, where the profile binds it:
    not when it is too wide to show, such as /tmp, nor under untrusted's overlay), persistent overlay
    upper dirs."""
    tops = []
    for m in mounts:
        if m.type in ("bind", "dev-bind") and m.src:
            tops.append(os.path.normpath(m.src))
        if m.type == "overlay" and m.upper not in ("tmpfs", "none"):
            tops.append(os.path.normpath(m.upper))
    return [t for t in dict.fromkeys(tops) if t != "/"]


def real_dirs(paths: list[str], realpath) -> list[str]:
    """`paths` as real paths (`realpath`: the caller's, which reads the host), each once, "/" left out: the
    host directories a sandbox can write, resolved (spec's rule file check, runtime/hostprep.py)."""
    return [t for t in dict.fromkeys(realpath(t) for t in paths) if t != "/"]


def users_binds(mounts: list, caches, staged: int | None):
    """(index, mount) of the read-write binds of the user's directories that show in the sandbox: not the
    staging directory (`staged`), not the home rule's writable exceptions (caches), not one a later mount
    covers (untrusted's overlay of the current directory)."""
    for index, m in enumerate(mounts):
        if index == staged or m.type not in ("bind", "dev-bind") or not m.src or any(is_below(os.path.normpath(m.src), c) for c in caches):
            continue
        if not _covered(mounts, index):
            yield index, m


def _covered(mounts: list, index: int) -> bool:
    """A later mount hides mount `index` (a `dir` made where a too-wide bind was left out covers nothing:
    attack 9, h04)."""
    return any(is_below(mounts[index].dst, later.dst) for later in mounts[index + 1:]
               if later.type not in landlockrules.NOT_MOUNTS)


def hidden_paths(mounts: list, hide: list[str], unhide: list[str], caches=(), staged: int | None = None) -> list[Hidden]:
    """Where security.hide applies: every bind users_binds() gives and every overlay no later mount covers
    (untrusted's current directory), less what --unhide shows (`unhide`: host paths; one above a bind shows
    all of it). An --unhide path in none of them is an error (a typo, likely)."""
    if unhide and not hide:
        raise RootsandError(f"--unhide {unhide[0]}: this profile hides nothing (security.hide is empty)")
    found, used = [], set()
    overlays = [(index, m) for index, m in enumerate(mounts) if m.type == "overlay" and not _covered(mounts, index)]
    for index, m in sorted([*users_binds(mounts, caches, staged), *overlays], key=lambda pair: pair[0]):
        src = os.path.normpath(m.src or m.dst)
        above = [path for path in unhide if is_below(src, path)]
        shown = sorted(os.path.relpath(path, src) for path in unhide if is_below(path, src) and path != src)
        used.update(above + [path for path in unhide if is_below(path, src)])
        if hide and not above:
            found.append(Hidden(mount=index, dst=m.dst, patterns=list(hide), shown=shown))
    for path in unhide:
        if path not in used:
            raise RootsandError(f"--unhide {path}: not in a directory the sandbox can write, where security.hide "
                                "applies", hint="hidden: " + ", ".join(hide))
    return found


def protected_paths(mounts: list, protect: list[str], cwd: str, homes, placeholders: bool = False,
                    caches=(), staged: int | None = None) -> list[Protected]:
    """Where each protected path lies: inside every read-write bind (the current directory, a --bind, a
    home, a profile's bind) that no later mount covers, but the home rule's writable exceptions (caches,
    which a build may poison as documented), and the staging directory (`staged`: none of the user's; only
    package files leave it). A `~/` entry counts in a home only."""
    found = []
    for index, m in users_binds(mounts, caches, staged):
        for entry in protect:
            if entry.startswith("~/") and m.src not in homes:
                continue
            path = entry.removeprefix("~/").rstrip("/")
            found.append(Protected(mount=index, path=path, dst=f"{m.dst.rstrip('/')}/{path}",
                                   directory=entry.endswith("/"), entry=entry, placeholder=placeholders))
    return found


def mount_step(m, memory: int | None) -> MountStep:
    """A profile's or the command line's Mount as the step the runtime carries out, its flags decided."""
    options = {}
    if m.type == "tmpfs":
        if m.mode is not None:
            options["mode"] = f"{m.mode:o}"  # else the kernel's 1777
        sizes = [size for size in (m.size, memory) if size]  # a tmpfs the sandbox can fill: capped
        if sizes:
            options["size"] = str(min(sizes))
    elif m.type == "dev":
        # pts_max: ptys are counted host-wide (kernel.pty.max); no sandbox may take them all
        options = {"mode": "0755", "size": "1m", "pts_max": str(PTS_MAX), **({"shm_size": str(memory)} if memory else {})}
    elif m.type == "overlay" and m.upper == "tmpfs" and memory:
        options["size"] = str(memory)
    return MountStep(
        type=m.type, dst=m.dst, src=m.src, lower=list(m.lower), upper=m.upper, optional=m.optional, create=m.create,
        flags=list(MOUNT_FLAGS[m.type]), options=options, mode=m.mode, content=m.content,
        nodes=list(DEV_NODES) if m.type == "dev" else [],
        read_only=list(PROC_READ_ONLY) if m.type == "proc" else [],
        masked=list(PROC_MASKED_FILES + PROC_MASKED_DIRS) if m.type == "proc" else [],
        origin=m.origin,
    )


def _network(spec, facts: HostFacts) -> Network:
    """The network section: the mode's entry of netmodes.MODES, with what of the spec the mode takes."""
    mode = MODES[spec.net_mode]
    values = {}
    if mode.host_loopback:
        values["allow_host_loopback"] = spec.allow_host_loopback
    if mode.publish:
        values["publish"] = list(spec.publish)
    if mode.resolv_conf:
        # the proxy answers every name, AAAA with no records: glibc (2.36+) need not ask for them at all
        values["resolv_conf"] = (f"nameserver {mode.dns}\noptions no-aaaa\n" if mode.allowlist
                                 else resolv_conf(facts.resolv_conf, spec.dns, mode.dns))
    if mode.helper:
        values["slirp_sandbox"] = facts.nested is None
    if mode.allowlist:
        values.update(allow=list(spec.allow_hosts), deny=list(spec.deny_hosts), header_timeout=spec.header_timeout)
    if spec.pod:
        values["pod"] = spec.pod
    return Network(mode=mode.name, address=f"{mode.address}/{mode.prefix}" if mode.address else None,
                   gateway=mode.gateway, dns=mode.dns, interface=mode.interface, proxy_port=mode.proxy_port, **values)


def proxy_env(port: int) -> dict[str, str]:
    """What pip, curl, git, npm, apt and urllib read to use a proxy; both spellings, as tools differ. The
    sandbox's own loopback is not proxied, so a test suite reaches the server it started itself."""
    url = f"http://127.0.0.1:{port}"
    values = {"HTTP_PROXY": url, "HTTPS_PROXY": url, "ALL_PROXY": f"socks5h://127.0.0.1:{port}",
              "NO_PROXY": "localhost,127.0.0.1,::1"}
    return {**values, **{k.lower(): v for k, v in values.items()}}


def resolv_conf(host_text: str, dns: list[str], forwarder: str = MODES["slirp"].dns) -> str:
    """The sandbox's resolv.conf: the profile's servers or the mode's DNS forwarder (slirp's 10.0.2.3) first,
    then the host's servers that the sandbox can reach (not 127.x or ::1, which are the host's own loopback)."""
    import ipaddress

    servers = list(dns) or [forwarder]
    other = []
    for line in host_text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                if not ipaddress.ip_address(fields[1].split("%")[0]).is_loopback and fields[1] not in servers:
                    servers.append(fields[1])
            except ValueError:
                continue
        elif fields and fields[0] in ("search", "domain", "options"):
            other.append(line.strip())
    return "".join(f"nameserver {s}\n" for s in servers[:3]) + "".join(f"{line}\n" for line in other)


def hosts_file(hostname: str) -> str:
    return (f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n")


def sandbox_sysctls(nested_userns: bool, limits, memory: int | None, facts: HostFacts) -> dict[str, str]:
    """Settings of the sandbox's own user and IPC namespaces, written through its own procfs.

    - nested_userns = false: no user namespace can be made inside (the kernel's answer, seccomp or not).
    - a profile with limits: 1/8 of the host user's inotify instances and watches (they are counted per
      user, host included, and the host's own tools need theirs), and SysV shared memory within the memory limit
      (RLIMIT_DATA does not count it) where no memory cgroup does.
    """
    values = {}
    if not nested_userns:
        values["user/max_user_namespaces"] = "0"
    if limits.rlimits or limits.cgroup:
        for name, host_max in (("instances", facts.inotify_instances), ("watches", facts.inotify_watches)):
            if host_max:
                values[f"user/max_inotify_{name}"] = str(max(1, host_max // INOTIFY_SHARE))
    if memory is not None and "memory.max" not in limits.cgroup:
        values["kernel/shmmax"] = str(min(SHM_MAX, memory))
        values["kernel/shmall"] = str(max(1, memory // facts.page_size))
        values["kernel/shmmni"] = "64"
    return values


def _made_when(create) -> str:
    if not create:
        return ""
    return "  (made when absent)" if create is True else f"  (made when absent and {create} is on PATH)"


def describe(p: Plan) -> list[str]:
    """The plan as a readable listing, one mount per line with its origin (`run --dry-run --verbose`)."""
    lines = [f"sandbox {p.name} (profile {p.profile}): {' '.join(p.argv)}"
             + (f" (else {' '.join(p.argv_fallback)}, where the sandbox lacks it)" if p.argv_fallback else ""),
             f"  runs as {p.run_uid}:{p.run_gid} ({p.user}) in {p.chdir}, hostname {p.hostname}"
             + (f", timeout {p.timeout:g}s" if p.timeout else ""),
             "  uid map: " + ", ".join(f"{a} {b} {c}" for a, b, c in p.ids.uid_lines)
             + "; gid map: " + ", ".join(f"{a} {b} {c}" for a, b, c in p.ids.gid_lines),
             f"  namespaces: {', '.join(p.namespaces)}",
             f"  root: {(p.resolved.rootfs if p.resolved else p.rootfs) or 'an empty tmpfs, read-only'}"]
    for step in p.resolved.mounts if p.resolved else p.mounts:  # host paths resolved, kinds decided
        what = {"symlink": f"-> {step.src}", "overlay": f"<- {':'.join(step.lower)} (upper {step.upper})"}.get(
            step.type, f"<- {step.src}" if step.src else "")
        flags = ",".join(step.flags + [f"{k}={v}" for k, v in step.options.items()])
        lines.append(f"  {step.type:<8} {step.dst:<28} {what}{'  ' + flags if flags else ''}"
                     f"{'  (optional)' if step.optional and step.kind != 'absent' else ''}"
                     f"{'  (optional, absent: skipped)' if step.kind == 'absent' else f'  ({step.kind})' if step.kind else ''}"
                     f"{_made_when(step.create)}"
                     f"  [{step.origin}]")
    net = p.network
    lines += [f"  home     {g.dst}  read-only (the home rule)"
              + (f", writable: {', '.join(g.writable)}" if g.writable else "") + f"  [{g.origin}]" for g in p.home_guards]
    lines += [f"  protect  {item.dst}{'/' if item.directory else ''}  read-only"
              f"{', made when absent' if item.placeholder else ', checked after the run when absent'}"
              f" [security.protect {item.entry}]" for item in p.protected]
    lines += [f"  hide     {item.dst}/{{{','.join(item.patterns)}}}  empty and read-only, as found at the start"
              + (f", but {', '.join(item.shown)}" if item.shown else "") + " [security.hide]" for item in p.hidden]
    handed = p.resolved.handover if p.resolved else p.handover
    if handed and handed.staging:
        lines.append(f"  staging  {p.mounts[handed.mount].dst} <- {handed.staging}: made for the run; at exit "
                     f"{' '.join(handed.keep)} at its top go to {handed.parent}, made yours; the rest is removed, and named")
    if handed and handed.top:
        lines.append(f"  yours    the regular files the command makes at the top of {handed.top}")
    lines.append(f"  network: {net.mode}" + (f", {net.address} via {net.gateway}, dns {net.dns}"
                                              + "".join(f", publish {f}" for f in net.publish)
                                              if net.address else ""))
    if net.proxy_port is not None:
        lines.append(f"  proxy: 127.0.0.1:{net.proxy_port} inside; allow {', '.join(net.allow) or 'nothing'}"
                     + (f"; deny {', '.join(net.deny)}" if net.deny else ""))
    lines.append(f"  capabilities: {', '.join(p.capabilities) or 'none'}; no_new_privs; "
                 f"seccomp: {len(p.seccomp)} rules" if p.seccomp is not None else
                 f"  capabilities: {', '.join(p.capabilities) or 'none'}; no_new_privs; seccomp: off")
    lines += ["  " + line for line in landlockrules.describe(p.landlock)]
    lines += [f"  limit: {line}" for line in limits.describe_limits(p.limits, p.memory)]
    lines += [f"  sysctl: {k} = {v}" for k, v in p.sysctls.items()]
    if p.resolved:
        lines += [f"  make     {path}  absent: made (yours, mode 0700) before it is bound" for path in p.resolved.made]
        lines += [f"  decided: {line}" for line in p.resolved.warnings + p.resolved.notes]
    return lines
