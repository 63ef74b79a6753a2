"""The real node's certificates, signed by the cluster's CA, and its kubeconfig files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .layout import NODE_NAME, NodeLayout, Slot


def openssl(*args: str, cwd: Path) -> None:
    res = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {args[0]}: {res.stderr.strip()}")


def issue(ca: Path, out: Path, name: str, subject: str, usage: str, sans: str = "") -> None:
    """OUT/NAME.crt and OUT/NAME.key (EC P-256), signed by CA/ca.crt for a year."""
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=out)
    (out / f"{name}.key").chmod(0o600)
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
    ext.append(f"extendedKeyUsage={usage}")
    if sans:
        ext.append(f"subjectAltName={sans}")
    (out / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=out)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        str(ca / "ca.crt"),
        "-CAkey",
        str(ca / "ca.key"),
        # The serial file stays here: the cluster's pki directory is not ours to write.
        "-CAserial",
        "ca.srl",
        "-CAcreateserial",
        "-days",
        "365",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=out,
    )
    (out / f"{name}.csr").unlink()
    (out / f"{name}.ext").unlink()


def make_node_pki(layout: NodeLayout, slot: Slot) -> None:
    """The kubelet's client and serving certificates and kube-proxy's client certificate."""
    # Made anew on every start: the serving certificate names the slot's address.
    shutil.rmtree(layout.pki, ignore_errors=True)
    layout.pki.mkdir(parents=True, mode=0o700)
    ca = layout.cluster_pki
    # The Node authorizer and NodeRestriction admit this node by its name in this form.
    issue(ca, layout.pki, "kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}", "clientAuth")
    issue(
        ca,
        layout.pki,
        "kubelet-serving",
        f"/CN={NODE_NAME}",
        "serverAuth",
        f"IP:{slot.node_ip},DNS:{NODE_NAME}",
    )
    # The bootstrap ClusterRoleBinding system:node-proxier grants this user what kube-proxy needs.
    issue(ca, layout.pki, "kube-proxy", "/CN=system:kube-proxy", "clientAuth")


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> None:
    """A kubeconfig for SERVER, a forwarder to the API server, whose certificate names localhost."""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: ec2-terminal-test
  cluster:
    server: {server}
    certificate-authority: {ca}
    tls-server-name: localhost
users:
- name: user
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: ec2-terminal-test
  context: {{cluster: ec2-terminal-test, user: user}}
current-context: ec2-terminal-test
"""
    path.write_text(text)
    path.chmod(0o600)
