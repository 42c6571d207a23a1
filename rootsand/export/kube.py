"""A Plan as a Kubernetes Pod manifest, its security context as close to the profile as Kubernetes allows.

Pure: the resolved Plan and the image in, the manifest (a dict, written as JSON: kubectl takes it, and JSON
is YAML, so `podman kube play` and other YAML readers take it too) and what Kubernetes cannot express out.

- the user namespace: rootsand always has one, so the Pod asks for its own (hostUsers: false): root inside
  is then no one on the node, as it is no one but you on your host;
- the command's user and group, runAsNonRoot where it is not root; no privilege escalation (no_new_privs);
  a read-only root file system; every capability dropped but the profile's;
- the seccomp filter as a Localhost profile (`rootsand export seccomp` writes its file);
- binds as hostPath volumes (read-only where the profile says), tmpfs mounts as memory-backed emptyDirs,
  each protected path that exists a read-only subPath mount of its bind's volume;
- the profile's memory limit (and a cpu limit where the plan has one) as resource limits.
"""

import math
import os
import re

from rootsand.config.netmodes import MODES
from rootsand.export.oci import below, refusals, staging_mount, unexpressed

SECCOMP_DIR = "rootsand"  # below the kubelet's seccomp directory (/var/lib/kubelet/seccomp)


def dns_label(text: str, fallback: str = "sandbox") -> str:
    """`text` as an RFC 1123 label: lower case letters, digits and '-', at most 63, starting and ending with
    an alphanumeric (Pod names, host names, volume names)."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].strip("-")
    return label or fallback


def seccomp_file(profile: str) -> str:
    """The profile's seccomp file, relative to the kubelet's seccomp directory."""
    return f"{SECCOMP_DIR}/{dns_label(os.path.basename(profile).removesuffix('.toml'), 'profile')}.json"


class _Volumes:
    """The Pod's volumes and the container's volume mounts, one volume per host path or tmpfs."""

    def __init__(self):
        self.volumes, self.mounts, self.by_path = [], [], {}

    def host(self, path: str, create: bool = False) -> str:
        if path not in self.by_path:
            name = f"v{len(self.volumes)}-{dns_label(path.strip('/').replace('/', '-'), 'root')}"[:63].rstrip("-")
            source = {"path": path}
            if create:
                source["type"] = "DirectoryOrCreate"
            self.volumes.append({"name": name, "hostPath": source})
            self.by_path[path] = name
        return self.by_path[path]

    def mount(self, name: str, dst: str, read_only: bool, sub_path: str | None = None) -> None:
        for m in self.mounts:
            if m["mountPath"] == dst:  # one mount a path: the later one's read-only-ness wins, as mounts stack
                self.mounts.remove(m)
                break
        entry = {"name": name, "mountPath": dst, "readOnly": read_only}
        if sub_path:
            entry["subPath"] = sub_path
        self.mounts.append(entry)


def manifest(plan, image: str, host_kind) -> tuple[dict, list[str]]:
    """(the Pod manifest, what it does otherwise than `rootsand run`) for a resolved Plan; `host_kind` as
    oci.export_bundle's."""
    refusals(plan)
    listed = []
    volumes = _Volumes()
    steps = plan.resolved.mounts if plan.resolved else plan.mounts
    runtime_own, links = [], []
    staged = staging_mount(plan)
    for index, step in enumerate(steps):
        if step.kind == "absent" or index == staged:
            continue
        if step.type in ("bind", "ro-bind", "dev-bind"):
            volumes.mount(volumes.host(step.src, bool(step.create)), step.dst, "ro" in step.flags)
        elif step.type == "tmpfs":
            name = f"t{index}-{dns_label(step.dst.strip('/').replace('/', '-'), 'root')}"[:63].rstrip("-")
            empty = {"medium": "Memory"}
            if "size" in step.options:
                empty["sizeLimit"] = step.options["size"]
            volumes.volumes.append({"name": name, "emptyDir": empty})
            volumes.mount(name, step.dst, False)
        elif step.type == "overlay" and len(step.lower) == 1:
            volumes.mount(volumes.host(step.lower[0]), step.dst, True)
            listed.append(f"overlay {step.dst}: {step.lower[0]} mounted read-only: writes there fail")
        elif step.type in ("proc", "dev", "mqueue"):
            runtime_own.append(step.dst)
        elif step.type == "symlink":
            links.append(step.dst)
        else:
            listed.append(f"a {step.type} at {step.dst} is not in the manifest")
        for guard in plan.home_guards:
            if guard.mount == index:
                home = volumes.host(guard.home)
                volumes.mount(home, guard.dst, True)
                for rel in guard.writable:
                    if host_kind(os.path.join(guard.home, rel)):
                        volumes.mount(home, os.path.join(guard.dst, rel), False, rel)
    if runtime_own:
        listed.append(f"{', '.join(runtime_own)}: the container runtime's own (its masked and read-only /proc "
                      "paths, its /dev)")
    if links:
        listed.append(f"the links {', '.join(links)}: the image's own")
    if plan.etc_files:
        listed.append(f"/etc/{', /etc/'.join(plan.etc_files)}: Kubernetes' own")
    covered = set(((plan.resolved.protect or {}) if plan.resolved else {}).get("covered", []))
    for item in plan.protected:
        bind = steps[item.mount]
        host = os.path.join(bind.src, item.path)
        if host in covered and not any(below(item.dst, m["mountPath"]) and m["mountPath"] != bind.dst
                                       for m in volumes.mounts if m["readOnly"]):
            volumes.mount(volumes.host(bind.src), item.dst, True, item.path)
    security = {"allowPrivilegeEscalation": not plan.no_new_privs, "privileged": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"], "add": [c.removeprefix("CAP_") for c in plan.capabilities]}}
    if not security["capabilities"]["add"]:
        del security["capabilities"]["add"]
    pod_security = {"runAsUser": plan.run_uid, "runAsGroup": plan.run_gid, "runAsNonRoot": plan.run_uid != 0}
    if plan.seccomp is not None:
        pod_security["seccompProfile"] = {"type": "Localhost", "localhostProfile": seccomp_file(plan.profile)}
        listed.append(f"the seccomp profile: save `rootsand export seccomp --profile {plan.profile}` as "
                      f"<kubelet root>/seccomp/{seccomp_file(plan.profile)} on each node (the default kubelet "
                      "root is /var/lib/kubelet)")
    else:
        pod_security["seccompProfile"] = {"type": "Unconfined"}
    container = {"name": "sandbox", "image": image, "command": list(plan.argv), "workingDir": plan.chdir,
                 "env": [{"name": k, "value": v} for k, v in plan.env.items()], "securityContext": security,
                 "volumeMounts": volumes.mounts}
    limits = {}
    if plan.memory:
        limits["memory"] = str(plan.memory)
    if "cpu.max" in plan.limits.cgroup:
        quota, period = plan.limits.cgroup["cpu.max"].split()
        limits["cpu"] = f"{int(quota) * 1000 // int(period)}m"
    if limits:
        container["resources"] = {"limits": limits}
    pids = plan.limits.cgroup.get("pids.max") or plan.limits.rlimits.get("nproc")
    if pids:
        listed.append(f"pids = {pids}: Kubernetes limits processes per node or Pod (the kubelet's podPidsLimit), "
                      "not in a manifest")
    rlimits = {k: v for k, v in plan.limits.rlimits.items() if k not in ("as", "nproc") or not plan.memory}
    if rlimits:
        listed.append("rlimits " + ", ".join(f"{k} = {v}" for k, v in rlimits.items())
                      + ": Kubernetes has no per-container rlimits (the container runtime's defaults apply)")
    if plan.sysctls:
        listed.append("sysctls " + ", ".join(f"{k.replace('/', '.')} = {v}" for k, v in plan.sysctls.items())
                      + " are not in the manifest (Kubernetes allows few without the kubelet's allow-list)")
    mode = MODES[plan.network.mode]
    if mode.own_netns and not mode.helper:  # loopback only (the proxy mode is refused before)
        listed.append(f"network {mode.name}: a Pod always has the cluster's network; a NetworkPolicy denying all "
                      "ingress and egress comes closest")
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": dns_label(f"rootsand-{os.path.basename(plan.profile).removesuffix('.toml')}"),
                     "labels": {"app.kubernetes.io/managed-by": "rootsand"},
                     "annotations": {"rootsand.org/profile": plan.profile}},
        "spec": {"restartPolicy": "Never", "hostname": dns_label(plan.hostname), "hostUsers": False,
                 "automountServiceAccountToken": False, "enableServiceLinks": False,
                 "securityContext": pod_security, "containers": [container], "volumes": volumes.volumes},
    }
    listed.append("hostUsers: false (the Pod's own user namespace) needs Kubernetes 1.30 or later (1.25 with "
                  "the UserNamespacesSupport gate) and a runtime with user namespaces; an older API server drops "
                  "the field, and uid 0 inside is then root on the node")
    if plan.timeout:
        pod["spec"]["activeDeadlineSeconds"] = max(1, math.ceil(plan.timeout))  # then the Pod is stopped
    # what rootsand does around the command, but how it enforces limits on this host (a Pod has its cgroup),
    # and the timeout, which the Pod has
    return pod, listed + [line for line in unexpressed(plan)
                          if not line.startswith(("network ", "limits: ", "the timeout "))]
