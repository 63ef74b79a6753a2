"""The real node's configuration files: containerd, CNI, kubelet, kube-proxy and Traefik.

Each renderer is a pure function of the layout, the slot and the tools, so what a node runs is
readable here in one place; docs/realnode.md explains why each setting is what it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hack.realnode.images import PAUSE_IMAGE
from hack.realnode.layout import (
    INGRESS_CLASS,
    NODE_NAME,
    NODE_TAINT,
    NodeLayout,
    Slot,
    Tools,
)

# The kernel settings the kubelet insists on (pkg/kubelet/cm setupKernelTunables). The node's
# mount namespace shows it these values instead of changing the shared machine's (mounts.py).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
CNI_NETWORK = "ec2t-real-node"


def toml_str(value: str | Path) -> str:
    return json.dumps(str(value))


def containerd_toml(layout: NodeLayout, tools: Tools) -> str:
    """containerd with its root, state, socket and plugins all under the node's directory."""
    run = layout.run
    return f"""version = 2
root = {toml_str(run / "containerd")}
state = {toml_str(run / "containerd-state")}
# Nothing here uses them, and each would probe the machine and log about it.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = {toml_str(layout.containerd_socket)}

[plugins."io.containerd.internal.v1.opt"]
  path = {toml_str(run / "opt")}

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = {toml_str(PAUSE_IMAGE)}
  # Pod network namespaces are bind-mounted here rather than in /run/netns.
  netns_mounts_under_state_dir = true
  # Root here lacks CAP_SYS_RESOURCE: an oom_score_adj below containerd's own is refused, so
  # never ask for one (runc fails "failed to update /proc/self/oom_score_adj: Permission denied").
  restrict_oom_score_adj = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = {toml_str(tools.runc)}
        Root = {toml_str(run / "runc")}
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = {toml_str(tools.cni_bin_dir)}
    conf_dir = {toml_str(layout.cni_conf_dir)}
    max_conf_num = 1
"""


def cni_conflist(layout: NodeLayout, slot: Slot) -> dict[str, Any]:
    """A bridge inside the node's namespace with addresses from the slot's pod network."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                # The machine routes the pod network to the node: no NAT needed to reach it.
                "ipMasq": False,
                # A pod reaching itself through its Service's address.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.run / "cni-ipam"),
                    "ranges": [[{"subnet": str(slot.pod_cidr)}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(layout: NodeLayout, slot: Slot) -> dict[str, Any]:
    """The KubeletConfiguration (v1beta1) for this machine's cgroup v1 and missing capabilities."""
    pki = layout.pki
    key, value, effect = NODE_TAINT
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Kubernetes 1.35 and later refuse cgroup v1 unless told otherwise.
        "failCgroupV1": False,
        # No systemd as PID 1 here.
        "cgroupDriver": "cgroupfs",
        # Pods under the node's own cgroup, apart from any other node's on the machine.
        "cgroupRoot": f"/{slot.name}",
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "address": slot.node_ip,
        "healthzBindAddress": slot.node_ip,
        "readOnlyPort": 0,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(layout.cluster.pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "registerWithTaints": [{"key": key, "value": value, "effect": effect}],
        "podLogsDir": str(layout.run / "pod-logs"),
        # The default (/usr/libexec/kubernetes/...) would be created on the machine.
        "volumePluginDir": str(layout.run / "volume-plugins"),
        # Pods get the machine's resolver (there is no cluster DNS).
        "resolvConf": "/etc/resolv.conf",
        # Root here cannot lower oom_score_adj (no CAP_SYS_RESOURCE); the default -999 fails.
        "oomScoreAdj": 0,
        # The disk is shared with everything else on the machine: evict only when it is nearly
        # full, and never collect the images imported here (nothing can be pulled again).
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "seccompDefault": True,
        "serializeImagePulls": False,
    }


def kube_proxy_config(layout: NodeLayout, slot: Slot) -> dict[str, Any]:
    """kube-proxy in iptables mode inside the node's namespace."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "bindAddress": slot.node_ip,
        "healthzBindAddress": f"{slot.node_ip}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "nodePortAddresses": ["primary"],
        "clusterCIDR": str(slot.pod_cidr),
        "oomScoreAdj": 0,
        # Zero leaves the conntrack table size and timeouts alone: they are the machine's (a
        # network namespace other than the first cannot set nf_conntrack_max anyway).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }


def traefik_config(
    layout: NodeLayout, api_server: str, token: str, web_port: int, ping_port: int
) -> dict[str, Any]:
    """Traefik's static configuration: the Ingress provider for one class, on loopback ports."""
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{web_port}"},
            "traefik": {"address": f"127.0.0.1:{ping_port}"},
        },
        "ping": {"entryPoint": "traefik"},
        "log": {"level": "INFO"},
        "accessLog": {},
        "providers": {
            "kubernetesIngress": {
                "endpoint": api_server,
                "token": token,
                "certAuthFilePath": str(layout.cluster.pki / "ca.crt"),
                "ingressClass": INGRESS_CLASS,
            }
        },
    }


def write_json(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """JSON, which YAML readers (kubelet, kube-proxy, Traefik) read as YAML."""
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.chmod(mode)
