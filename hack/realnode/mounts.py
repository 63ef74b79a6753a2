"""The node's private mount namespace, set up by its first process (the holder) before it sleeps.

containerd, the kubelet and kube-proxy all join the holder's mount and network namespaces. Mounts
made in there (container root filesystems, pod volumes, the pods' network namespaces) never
reach the machine (propagation is slave: the machine's mounts come in, none go out), and they all
vanish when the node's last process exits. In there:

- a fresh tmpfs on /run: containerd's shim sockets and fifos (under /run/containerd, fixed in
  containerd 1.6) stay private to the node;
- a fresh tmpfs on /var/log: the kubelet's /var/log/containers links (a fixed path);
- the node's own directory on /var/lib/cni: libcni's result cache (a fixed path in containerd 1.6);
- files with the values the kubelet demands over their /proc/sys entries (configs.KUBELET_SYSCTLS),
  so it finds them as it wants them instead of changing the shared machine's kernel settings;
  its writes land in those files.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hack.realnode.configs import KUBELET_SYSCTLS
from hack.realnode.layout import NodeError, NodeLayout

CNI_CACHE = Path("/var/lib/cni")


def mount(*args: str) -> None:
    res = subprocess.run(["mount", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise NodeError(f"mount {' '.join(args)}: {res.stderr.strip()}")


def prepare_host(layout: NodeLayout) -> None:
    """What the holder will mount, made on the machine side beforehand."""
    layout.sysctl.mkdir(parents=True, exist_ok=True)
    for key, value in KUBELET_SYSCTLS.items():
        (layout.sysctl / key.replace("/", ".")).write_text(f"{value}\n")
    (layout.run / "cni-cache").mkdir(parents=True, exist_ok=True)
    # The mount point must exist; this empty directory is all the node leaves outside its own.
    CNI_CACHE.mkdir(parents=True, exist_ok=True)


def ready_marker(layout: NodeLayout) -> Path:
    return layout.run / "mounts.ready"


# The machine's mount namespace, as the process that starts the holder sees it.
HOST_MOUNT_NS = "EC2_TERMINAL_HOST_MOUNT_NS"


def mount_namespace() -> str:
    return os.readlink("/proc/self/ns/mnt")


def hold(layout: NodeLayout) -> None:
    """Runs in the new mount namespace: mounts as described above, then sleeps for good."""
    # Mounting over /run in the machine's own namespace would hide it from everything else.
    host = os.environ.get(HOST_MOUNT_NS)
    if not host or host == mount_namespace():
        raise NodeError("hold must run in a new mount namespace (unshare --mount)")
    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev", "tmpfs", "/run")
    mount("-t", "tmpfs", "-o", "mode=0755,nosuid,nodev,noexec", "tmpfs", "/var/log")
    mount("--bind", str(layout.run / "cni-cache"), str(CNI_CACHE))
    for key in KUBELET_SYSCTLS:
        mount("--bind", str(layout.sysctl / key.replace("/", ".")), f"/proc/sys/{key}")
    ready_marker(layout).touch()
    # The namespaces live as long as some process is in them; this one is that process.
    os.execvp("sleep", ["sleep", "infinity"])  # noqa: S606
