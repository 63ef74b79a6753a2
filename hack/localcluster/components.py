"""Each component's binary, command line and health check."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from hack.localcluster.errors import ClusterError
from hack.localcluster.layout import ROOT, Layout
from hack.localcluster.state import Component, Ports

SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# Each binary, and the variable that overrides its path (hack/k8s/build --print-env).
BINARY_ENV = {
    "etcd": "EC2_TERMINAL_ETCD",
    "kube-apiserver": "EC2_TERMINAL_KUBE_APISERVER",
    "kube-controller-manager": "EC2_TERMINAL_KUBE_CONTROLLER_MANAGER",
    "kube-scheduler": "EC2_TERMINAL_KUBE_SCHEDULER",
    "kwok": "EC2_TERMINAL_KWOK",
    "kwok-stages": "EC2_TERMINAL_KWOK_STAGES",
    "kubectl": "EC2_TERMINAL_KUBECTL",
    "helm": "EC2_TERMINAL_HELM",
}
Binaries = Mapping[str, str]


def binaries(build: bool) -> dict[str, str]:
    """Paths of every binary: from EC2_TERMINAL_* variables, else the cache (built if asked)."""
    script = ROOT / "hack/k8s/build"
    if build:
        subprocess.run([str(script)], check=True, stdout=sys.stderr)
    out = subprocess.run(
        [str(script), "--print-env"], check=True, capture_output=True, text=True
    ).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    paths = {name: env[var] for name, var in BINARY_ENV.items()}
    missing = [
        p for n, p in paths.items() if not os.access(p, os.R_OK if n == "kwok-stages" else os.X_OK)
    ]
    if missing:
        raise ClusterError(f"missing binaries (run hack/k8s/build): {', '.join(missing)}")
    return paths


def argv(component: Component, layout: Layout, bins: Binaries, ports: Ports) -> list[str]:
    """The command line that runs `component`."""
    pki = layout.pki
    binary = bins[component.value]
    port = ports[component]
    if component is Component.ETCD:
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        client = f"http://127.0.0.1:{port}"
        return [
            binary,
            "--name=default",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}",
            "--initial-cluster-state=new",
            # Test data only: durability across power loss does not matter, speed does.
            "--unsafe-no-fsync",
            "--log-level=warn",
        ]
    if component is Component.APISERVER:
        return [
            binary,
            f"--etcd-servers=http://127.0.0.1:{ports[Component.ETCD]}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--tls-min-version=VersionTLS12",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            f"--service-account-issuer={ISSUER}",
            f"--api-audiences={ISSUER}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # The endpoint reconciler would publish 127.0.0.1, which Endpoints validation refuses.
            "--endpoint-reconciler-type=none",
            # A real node (hack/real-node): its kubelet by address (its name is not in DNS).
            f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            # Verified: hack/real-node issues the kubelet's serving certificate from this CA.
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            f"--cert-dir={layout.dir / 'apiserver-certs'}",
            "--profiling=false",
        ]
    if component is Component.KWOK:
        return [
            binary,
            f"--kubeconfig={layout.kubeconfig('kwok')}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--cidr=10.244.0.1/16",
            "--node-ip=127.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}",
            f"--config={bins['kwok-stages']}",
        ]
    kc = layout.kubeconfig(component.value.removeprefix("kube-"))
    shared = [
        binary,
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        # No front proxy here: don't look up (and keep warning about) its request-header CA.
        "--authentication-skip-lookup=true",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--leader-elect=false",
        "--profiling=false",
    ]
    if component is Component.SCHEDULER:
        return shared
    return [
        *shared,
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials=true",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cluster-cidr={POD_CIDR}",
        "--allocate-node-cidrs=false",
    ]


def _get(url: str, ctx: ssl.SSLContext | None, timeout: float = 2.0) -> tuple[int, str]:
    try:
        # Only the http(s) URLs health_url builds reach here.
        with urllib.request.urlopen(url, context=ctx, timeout=timeout) as resp:  # noqa: S310
            return int(resp.status), resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return 0, str(exc)


def tls_context(pki: Path, client: str | None) -> ssl.SSLContext:
    """Trusts the cluster CA; presents `client`'s certificate if given."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if client:
        ctx.load_cert_chain(str(pki / f"{client}.crt"), str(pki / f"{client}.key"))
    return ctx


def health_url(component: Component, ports: Ports) -> str:
    """Where `component` says whether it is healthy."""
    port = ports[component]
    return {
        Component.ETCD: f"http://127.0.0.1:{port}/health",
        Component.APISERVER: f"https://127.0.0.1:{port}/readyz",
        Component.CONTROLLER_MANAGER: f"https://127.0.0.1:{port}/healthz",
        Component.SCHEDULER: f"https://127.0.0.1:{port}/healthz",
        Component.KWOK: f"http://127.0.0.1:{port}/healthz",
    }[component]


def healthy(layout: Layout, component: Component, ports: Ports) -> tuple[bool, str]:
    """Whether `component` answers healthy, and (the start of) what it answered."""
    url = health_url(component, ports)
    ctx = tls_context(layout.pki, "admin") if url.startswith("https") else None
    status, body = _get(url, ctx)
    if component is Component.ETCD:
        return status == 200 and '"health":"true"' in body.replace(" ", ""), body.strip()[:200]
    return status == 200, body.strip()[:200]
