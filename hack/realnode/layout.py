"""Where a real node keeps its files, which addresses it uses, and which binaries it runs."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hack.localcluster.errors import ClusterError
from hack.localcluster.layout import ROOT, Layout

NODE_NAME = "real-node-0"
# What a pod asks for to land here: the label (nodeSelector) and the taint it must tolerate.
NODE_LABEL = ("type", "real")
NODE_TAINT = ("ec2-terminal.io/real-node", "true", "NoSchedule")
# The IngressClass the ingress controller serves (not the cluster's default class).
INGRESS_CLASS = "traefik"
INGRESS_CONTROLLER = "traefik.io/ingress-controller"
# A Unix socket's path must fit sockaddr_un.sun_path (108 bytes with the NUL).
MAX_SOCKET_PATH = 107


class NodeError(ClusterError):
    """The real node could not be started, stopped or used; the message says why."""


@dataclass(frozen=True)
class Slot:
    """One real node's machine-wide names and addresses, all derived from its slot index."""

    # Each node lives in its own network namespace, linked to the machine by a veth pair: the
    # machine side is host_ip on link (a /30), the node side node_ip. Pods get addresses from
    # pod_cidr on a bridge inside the namespace; the machine routes pod_cidr to the node.

    index: int

    @property
    def name(self) -> str:
        """The network namespace, the machine side of the veth pair and the cgroup."""
        return f"ec2t-rn{self.index}"

    @property
    def link(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.247.{self.index}.0/30")

    @property
    def host_ip(self) -> str:
        return f"10.247.{self.index}.1"

    @property
    def node_ip(self) -> str:
        return f"10.247.{self.index}.2"

    @property
    def pod_cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.246.{self.index}.0/24")

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.name


SLOTS = 64


@dataclass(frozen=True)
class NodeLayout:
    """The files of one cluster's real node, under ``<cluster dir>/realnode``."""

    cluster: Layout

    @property
    def dir(self) -> Path:
        return self.cluster.dir / "realnode"

    @property
    def own(self) -> Layout:
        """The node's directory as a Layout, for its lock (<cluster dir>/.realnode.lock)."""
        return Layout(self.dir)

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def pki(self) -> Path:
        return self.dir / "pki"

    @property
    def logs(self) -> Path:
        return self.dir / "logs"

    @property
    def run(self) -> Path:
        """Everything a node run writes besides logs and certificates; emptied by every start."""
        return self.dir / "run"

    @property
    def containerd_config(self) -> Path:
        return self.dir / "containerd.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.run / "cni/net.d"

    @property
    def kubelet_config(self) -> Path:
        return self.dir / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.dir / "kube-proxy.yaml"

    @property
    def traefik_config(self) -> Path:
        return self.dir / "traefik.yaml"

    @property
    def sysctl(self) -> Path:
        """Files the node's mount namespace shows in place of kernel settings (see mounts.py)."""
        return self.dir / "sysctl"

    def kubeconfig(self, user: str) -> Path:
        return self.dir / f"{user}.kubeconfig"

    def check(self) -> None:
        """Fails early when a socket path would not fit (a deep EC2_TERMINAL_CLUSTER_DIR)."""
        longest = str(self.containerd_socket) + ".ttrpc"
        if len(longest.encode()) > MAX_SOCKET_PATH:
            raise NodeError(
                f"state directory too deep: the socket path {longest} is longer than "
                f"{MAX_SOCKET_PATH} bytes; choose a shorter EC2_TERMINAL_CLUSTER_DIR"
            )


@dataclass(frozen=True)
class Tools:
    """Paths of the binaries a real node runs."""

    kubelet: str
    kube_proxy: str
    kubectl: str
    containerd: str
    ctr: str
    runc: str
    cni_bin_dir: str
    traefik: str
    images: Path


def print_env(script: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(script), "--print-env"], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def tools(build: bool) -> Tools:
    """The binaries from hack/k8s/build and hack/realnode/build (built first if asked)."""
    scripts = (ROOT / "hack/k8s/build", ROOT / "hack/realnode/build")
    if build:
        for script in scripts:
            subprocess.run([str(script)], check=True, stdout=subprocess.DEVNULL)
    env: dict[str, str] = {}
    for script in scripts:
        env.update(print_env(script))
    found = Tools(
        kubelet=env["EC2_TERMINAL_KUBELET"],
        kube_proxy=env["EC2_TERMINAL_KUBE_PROXY"],
        kubectl=env["EC2_TERMINAL_KUBECTL"],
        containerd=env["EC2_TERMINAL_CONTAINERD"],
        ctr=env["EC2_TERMINAL_CTR"],
        runc=env["EC2_TERMINAL_RUNC"],
        cni_bin_dir=env["EC2_TERMINAL_CNI_BIN_DIR"],
        traefik=env["EC2_TERMINAL_TRAEFIK"],
        images=Path(env["EC2_TERMINAL_REALNODE_IMAGES"]),
    )
    executables = [
        found.kubelet,
        found.kube_proxy,
        found.kubectl,
        found.containerd,
        found.ctr,
        found.runc,
        found.traefik,
    ]
    plugins = ("bridge", "host-local", "loopback", "portmap")
    executables += [f"{found.cni_bin_dir}/{p}" for p in plugins]
    missing = [p for p in executables if not os.access(p, os.X_OK)]
    if not (found.images / "SHA256SUMS").exists():
        missing.append(str(found.images))
    if missing:
        raise NodeError(
            f"missing (run hack/k8s/build and hack/realnode/build): {', '.join(missing)}"
        )
    return found
