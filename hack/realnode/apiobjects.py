"""What the real node needs in the API: RBAC for the API server and Traefik, the IngressClass."""

from __future__ import annotations

import contextlib
import json
import subprocess
from typing import Any

from hack.localcluster import control
from hack.localcluster.errors import ClusterError
from hack.realnode.layout import INGRESS_CLASS, INGRESS_CONTROLLER, NODE_NAME, NodeLayout

TRAEFIK_ACCOUNT = ("kube-system", "ec2-terminal-traefik")
# The user of the API server's client certificate towards kubelets (hack/cluster issues it).
APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
# A year: the token lives in a file under the node's directory as long as the cluster does.
TRAEFIK_TOKEN_SECONDS = 365 * 86400


def kubectl(
    layout: NodeLayout, kubectl_path: str, *args: str, stdin: str | None = None, timeout: float = 60
) -> str:
    """kubectl as the cluster's admin; a ClusterError with its stderr when it fails."""
    bins = {"kubectl": kubectl_path}
    return control.kubectl(layout.cluster, bins, *args, stdin=stdin, timeout=timeout)


def manifests() -> list[dict[str, Any]]:
    """The objects `hack/real-node up` applies (idempotent)."""
    namespace, account = TRAEFIK_ACCOUNT
    traefik_rules = [
        {
            "apiGroups": [""],
            "resources": ["services", "secrets", "nodes"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["ingresses", "ingressclasses"],
            "verbs": ["get", "list", "watch"],
        },
        {
            "apiGroups": ["networking.k8s.io"],
            "resources": ["ingresses/status"],
            "verbs": ["update"],
        },
    ]
    return [
        # kubectl logs, exec and port-forward: the kubelet asks the API server (webhook
        # authorization) whether this user may use its API.
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "ec2-terminal:kube-apiserver-kubelet-client"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:kubelet-api-admin",
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "User",
                    "name": APISERVER_KUBELET_CLIENT,
                }
            ],
        },
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "ec2-terminal:traefik"},
            "rules": traefik_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "ec2-terminal:traefik"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "ec2-terminal:traefik",
            },
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
        # Not the default class: Ingresses that name no class stay unserved, as they would be
        # on the kwok-only cluster.
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": INGRESS_CLASS},
            "spec": {"controller": INGRESS_CONTROLLER},
        },
    ]


# The EndpointSlice that gives the `kubernetes` Service (10.96.0.1:443) an address: hack/cluster
# runs the API server with --endpoint-reconciler-type=none (it would publish 127.0.0.1).
API_SLICE = ("default", "kubernetes-real-node")


def api_endpoint_slice(host_ip: str, port: int) -> dict[str, Any]:
    """The `kubernetes` Service's address for pods: kube-proxy sends them to the forwarder."""
    namespace, name = API_SLICE
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": "kubernetes",
                "endpointslice.kubernetes.io/managed-by": "real-node.ec2-terminal.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host_ip], "conditions": {"ready": True}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }


def apply_manifests(layout: NodeLayout, kubectl_path: str) -> None:
    items = {"apiVersion": "v1", "kind": "List", "items": manifests()}
    kubectl(layout, kubectl_path, "apply", "-f", "-", stdin=json.dumps(items))


def traefik_token(layout: NodeLayout, kubectl_path: str) -> str:
    namespace, account = TRAEFIK_ACCOUNT
    out = kubectl(
        layout,
        kubectl_path,
        "create",
        "token",
        account,
        f"--namespace={namespace}",
        f"--duration={TRAEFIK_TOKEN_SECONDS}s",
    )
    return out.strip()


def node_ready(layout: NodeLayout, kubectl_path: str) -> bool:
    try:
        node = json.loads(
            kubectl(layout, kubectl_path, "get", "node", NODE_NAME, "-o", "json", timeout=10)
        )
    except (ClusterError, subprocess.TimeoutExpired, ValueError):
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def drain(layout: NodeLayout, kubectl_path: str) -> None:
    """Deletes the node's pods while its kubelet runs; quiet if the API server is down."""
    # Pods left on a deleted Node wait for the pod garbage collector (40 s and more), and so
    # does the deletion of their namespace.
    with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
        kubectl(
            layout,
            kubectl_path,
            "delete",
            "pods",
            "--all-namespaces",
            f"--field-selector=spec.nodeName={NODE_NAME}",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=60s",
            timeout=90,
        )


def delete_node(layout: NodeLayout, kubectl_path: str) -> None:
    """Removes the Node object and the API server's EndpointSlice; quiet if the API is down."""
    namespace, name = API_SLICE
    for args in (
        ("node", NODE_NAME),
        ("endpointslice", name, f"--namespace={namespace}"),
    ):
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            kubectl(
                layout,
                kubectl_path,
                "delete",
                *args,
                "--ignore-not-found",
                "--wait=false",
                "--request-timeout=5s",
                timeout=10,
            )
