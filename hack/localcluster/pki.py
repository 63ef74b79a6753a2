"""The cluster's certificates and kubeconfigs, made with openssl."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hack.localcluster.layout import log

# Every certificate pair in pki/ (name.crt, name.key) besides the service-account key.
# apiserver-kubelet-client: the API server towards a real node's kubelet (docs/realnode.md).
CERTIFICATES = (
    "ca",
    "apiserver",
    "serving",
    "admin",
    "controller-manager",
    "scheduler",
    "kwok",
    "apiserver-kubelet-client",
)


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(
    pki: Path, name: str, subject: str, usage: str, sans: str = "", ca: Path | None = None
) -> None:
    """Issues NAME.crt/NAME.key in PKI signed by the CA in CA (default PKI) (EC P-256: quick)."""
    ca = ca or pki
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature"]
    ext.append(f"extendedKeyUsage={usage}")
    if sans:
        ext.append(f"subjectAltName={sans}")
    (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
    openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        str(ca / "ca.crt"),
        "-CAkey",
        str(ca / "ca.key"),
        "-CAcreateserial",
        "-days",
        "365",
        "-sha256",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


def certs_valid(pki: Path) -> bool:
    """True when every file exists and the CA and leaves are good for at least another week."""
    if not all((pki / f"{n}.crt").exists() and (pki / f"{n}.key").exists() for n in CERTIFICATES):
        return False
    if not (pki / "sa.key").exists() or not (pki / "sa.pub").exists():
        return False
    for n in CERTIFICATES:
        check = [
            "openssl",
            "x509",
            "-checkend",
            str(7 * 86400),
            "-noout",
            "-in",
            str(pki / f"{n}.crt"),
        ]
        if subprocess.run(check, capture_output=True).returncode != 0:
            return False
    return True


def make_pki(pki: Path) -> None:
    """A CA, serving certs, one client cert per component, and the service-account key pair."""
    if certs_valid(pki):
        return
    log("generating certificates in %s", pki)
    shutil.rmtree(pki, ignore_errors=True)
    pki.mkdir(parents=True, mode=0o700)
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key", cwd=pki)
    openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=ec2-terminal-test-ca",
        "-days",
        "3650",
        "-sha256",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-out",
        "ca.crt",
        cwd=pki,
    )
    local = "IP:127.0.0.1,DNS:localhost"
    kube_sans = (
        f"{local},IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    )
    issue(pki, "apiserver", "/CN=kube-apiserver", "serverAuth", kube_sans)
    issue(pki, "serving", "/CN=localhost", "serverAuth", local)
    issue(pki, "admin", "/O=system:masters/CN=ec2-terminal-admin", "clientAuth")
    issue(pki, "controller-manager", "/CN=system:kube-controller-manager", "clientAuth")
    issue(pki, "scheduler", "/CN=system:kube-scheduler", "clientAuth")
    # kwok updates node and pod status for many nodes, which the Node authorizer would limit.
    issue(pki, "kwok", "/O=system:masters/CN=kwok", "clientAuth")
    # The API server towards a real node's kubelet (logs, exec); hack/real-node grants it
    # system:kubelet-api-admin.
    issue(pki, "apiserver-kubelet-client", "/CN=kube-apiserver-kubelet-client", "clientAuth")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for key in pki.glob("*.key"):
        key.chmod(0o600)


def write_kubeconfig(
    path: Path,
    server: str,
    pki: Path,
    user: str,
    ca: Path | None = None,
    tls_server_name: str | None = None,
) -> None:
    """A kubeconfig for `user`'s client certificate in PKI, trusting CA/ca.crt (default PKI's)."""
    # Paths, not inline data: the keys stay in one place with mode 0600.
    server_name = f"\n    tls-server-name: {tls_server_name}" if tls_server_name else ""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: ec2-terminal-test
  cluster:
    server: {server}
    certificate-authority: {(ca or pki) / "ca.crt"}{server_name}
users:
- name: {user}
  user:
    client-certificate: {pki / f"{user}.crt"}
    client-key: {pki / f"{user}.key"}
contexts:
- name: ec2-terminal-test
  context: {{cluster: ec2-terminal-test, user: {user}}}
current-context: ec2-terminal-test
"""
    path.write_text(text)
    path.chmod(0o600)
