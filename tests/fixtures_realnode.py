"""Pytest plugin: a real node (hack/real-node) beside the test control plane's kwok nodes.

The node ``real-node-0`` runs containerd, runc, the kubelet and kube-proxy (iptables) of the
control plane's release in its own network namespace, and Traefik serves Ingresses of the class
``traefik`` on a loopback port. It is labelled ``type=real`` and tainted, so only pods that ask
land there (``RealNode.placement()`` gives the nodeSelector and toleration). Nothing is pulled:
images are imported into its containerd (``RealNode.import_image``); ``hello`` is always there.

Fixtures:

- ``real_node`` (session) -> :class:`RealNode`: started on the session's cluster unless it is
  up already, and stopped at the end of the session if this session started it.

Tests using it are marked ``realnode`` (and ``cluster``) automatically. See docs/realnode.md.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kube import KubeCluster, live_sessions, sessions_lock, state_dir

ROOT = Path(__file__).resolve().parents[1]
REAL_NODE = ROOT / "hack/real-node"
REALNODE_FIXTURES = frozenset({"real_node"})


def hack_real_node(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REAL_NODE), f"--dir={state_dir()}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class RealNode:
    """The running real node, as ``hack/real-node info`` describes it."""

    name: str
    label: dict[str, str]
    taint: dict[str, str]
    ingress_class: str
    ingress_url: str
    node_ip: str
    host_ip: str
    ctr_argv: list[str]
    images: dict[str, Path]

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> RealNode:
        return cls(
            name=info["node"],
            label=info["label"],
            taint=info["taint"],
            ingress_class=info["ingressClass"],
            ingress_url=info["ingressURL"],
            node_ip=info["nodeIP"],
            host_ip=info["hostIP"],
            ctr_argv=info["ctr"],
            images={name: Path(path) for name, path in info["images"].items()},
        )

    def placement(self) -> dict[str, Any]:
        """Pod spec fields that put a pod on this node (and only a pod that has them)."""
        return {
            "nodeSelector": dict(self.label),
            "tolerations": [{**self.taint, "operator": "Equal"}],
        }

    def ctr(self, *args: str) -> str:
        """ctr against the node's containerd, namespace k8s.io; stdout."""
        res = subprocess.run(
            [*self.ctr_argv, *args], capture_output=True, text=True, timeout=60, check=False
        )
        if res.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed: {res.stderr.strip()}")
        return res.stdout

    def in_node(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """ARGV in the node's network namespace (where Service addresses work, as on any node)."""
        return hack_real_node("exec", "--", *argv, timeout=timeout)

    def import_image(self, archive: Path) -> list[str]:
        """Imports an OCI archive into the node's containerd; the image names it held."""
        res = hack_real_node("import-image", str(archive), timeout=300)
        if res.returncode != 0:
            raise AssertionError(f"import of {archive} failed: {res.stderr.strip()}")
        return res.stdout.split()


@pytest.fixture(scope="session")
def real_node(kube_cluster: KubeCluster) -> Iterator[RealNode]:
    """The real node on the session's cluster; a failure to start fails the test with its log."""
    if os.environ.get("EC2_TERMINAL_KUBECONFIG"):
        pytest.fail(
            "the real node runs beside a cluster hack/cluster started (EC2_TERMINAL_CLUSTER_DIR), "
            "not an external EC2_TERMINAL_KUBECONFIG",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail("the real node needs root (network namespaces, cgroups, mounts)", pytrace=False)
    directory = state_dir() / "realnode"
    me = os.getpid()
    with sessions_lock(directory) as sessions:
        (sessions / str(me)).touch()
        started_marker = sessions / "started-by-fixture"
        if hack_real_node("status").returncode != 0:
            res = hack_real_node("up", "--no-build", timeout=600)
            if res.returncode != 0:
                pytest.fail(f"hack/real-node up failed:\n{res.stderr[-4000:]}", pytrace=False)
            started_marker.touch()
    try:
        info = hack_real_node("info")
        if info.returncode != 0:
            pytest.fail(f"hack/real-node info failed: {info.stderr}", pytrace=False)
        yield RealNode.from_info(json.loads(info.stdout))
    finally:
        with sessions_lock(directory) as sessions:
            (sessions / str(me)).unlink(missing_ok=True)
            if started_marker.exists() and not live_sessions(sessions):
                hack_real_node("down", timeout=120)
                started_marker.unlink(missing_ok=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks every test that uses the real node ``realnode`` and ``cluster``."""
    for item in items:
        if REALNODE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realnode)
            item.add_marker(pytest.mark.cluster)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Builds what the real node runs before any test starts, outside test timeouts."""
    if session.config.option.collectonly:
        return
    if any(item.get_closest_marker("realnode") for item in session.items):
        subprocess.run([str(ROOT / "hack/realnode/build")], check=True)
