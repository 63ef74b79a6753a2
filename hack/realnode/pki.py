"""The real node's certificates, signed by the cluster's CA, and its kubeconfig files."""

from __future__ import annotations

import shutil

from hack.localcluster.pki import issue, write_kubeconfig
from hack.realnode.layout import NODE_NAME, NodeLayout, Slot


def make_node_pki(layout: NodeLayout, slot: Slot) -> None:
    """The kubelet's client and serving certificates and kube-proxy's client certificate."""
    # Made anew on every start: the serving certificate names the slot's address.
    shutil.rmtree(layout.pki, ignore_errors=True)
    layout.pki.mkdir(parents=True, mode=0o700)
    ca = layout.cluster.pki
    # The Node authorizer and NodeRestriction admit this node by its name in this form.
    subject = f"/O=system:nodes/CN=system:node:{NODE_NAME}"
    issue(layout.pki, "kubelet", subject, "clientAuth", ca=ca)
    sans = f"IP:{slot.node_ip},DNS:{NODE_NAME}"
    issue(layout.pki, "kubelet-serving", f"/CN={NODE_NAME}", "serverAuth", sans, ca=ca)
    # The bootstrap ClusterRoleBinding system:node-proxier grants this user what kube-proxy needs.
    issue(layout.pki, "kube-proxy", "/CN=system:kube-proxy", "clientAuth", ca=ca)
    for key in layout.pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfigs(layout: NodeLayout, server: str) -> None:
    """The kubelet's and kube-proxy's, for SERVER: the forwarder to the API server."""
    for user in ("kubelet", "kube-proxy"):
        # The API server's certificate names localhost, not the forwarder's address.
        write_kubeconfig(
            layout.kubeconfig(user),
            server,
            layout.pki,
            user,
            ca=layout.cluster.pki,
            tls_server_name="localhost",
        )
