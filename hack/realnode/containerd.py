"""Talking to the node's containerd with ctr: readiness, image import, what runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from hack.realnode.layout import NodeError, NodeLayout, Tools

# The containerd namespace the CRI plugin, and so the kubelet, uses.
K8S_NAMESPACE = "k8s.io"


def ctr_argv(layout: NodeLayout, tools: Tools, *args: str) -> list[str]:
    address = f"--address={layout.containerd_socket}"
    return [tools.ctr, address, f"--namespace={K8S_NAMESPACE}", *args]


def ctr(layout: NodeLayout, tools: Tools, *args: str, timeout: float = 120) -> str:
    res = subprocess.run(
        ctr_argv(layout, tools, *args), capture_output=True, text=True, timeout=timeout
    )
    if res.returncode != 0:
        raise NodeError(f"ctr {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def serving(layout: NodeLayout, tools: Tools) -> bool:
    """True once containerd answers on its socket."""
    if not layout.containerd_socket.exists():
        return False
    try:
        ctr(layout, tools, "version", timeout=5)
    except (NodeError, subprocess.TimeoutExpired):
        return False
    return True


def import_archive(layout: NodeLayout, tools: Tools, archive: Path) -> list[str]:
    """Imports an OCI archive (images.py's, `podman save --format oci-archive`); its names."""
    # containerd names images after the index's io.containerd.image.name annotation, else its
    # org.opencontainers.image.ref.name (where podman writes the full name).
    if not archive.is_file():
        raise NodeError(f"no image archive at {archive}")
    out = ctr(layout, tools, "images", "import", "--snapshotter=overlayfs", str(archive))
    # Lines read "unpacking NAME (sha256:...)...done".
    names = [line.split()[1] for line in out.splitlines() if line.startswith("unpacking ")]
    if not names:
        raise NodeError(f"{archive} held no image containerd could name:\n{out}")
    return names
