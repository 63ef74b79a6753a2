"""The whole loop: operator -> rendered pod -> real server -> activity -> status -> idle expiry.

kwok runs the session pod only on paper, so the test runs the pod's real command locally,
with the pod's environment and Secret files taken from the cluster and the pod's own
ServiceAccount token, pointed at the test API server as if in-cluster. A browser-like client
uses the terminal; the server's activity reports reach the operator through the session's
Lease, and the session expires once idle.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import (
    OperatorFactory,
    condition,
    get_session,
    key_secret,
    materialize_volumes,
    pod_command_running,
    pod_environment,
    session_manifest,
    wait_phase,
)
from tests.fixtures_sshd import Sshd
from tests.support import free_port
from tests.wsclient import open_client

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _secret_data(cluster: KubeCluster, namespace: str, name: str) -> dict[str, bytes]:
    secret = cluster.kubectl_json("get", "secret", name, namespace=namespace)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def _service_account_dir(cluster: KubeCluster, namespace: str, sa: str, path: Path) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount."""
    path.mkdir()
    token = cluster.kubectl("create", "token", sa, "--duration=10m", namespace=namespace)
    (path / "token").write_text(token.strip())
    (path / "ca.crt").write_bytes(cluster.ca_certificate())
    return path


@pytest.mark.anyio
async def test_real_server_activity_drives_status_and_idle_expiry(
    kube_cluster: KubeCluster,
    namespace: str,
    operator_factory: OperatorFactory,
    sshd: Sshd,
    tmp_path: Path,
) -> None:
    # The egress policy must let the session reach sshd's port (22 only by default).
    egress = {"egress": {"ssh": {"ports": [sshd.port]}}}
    operator_factory(namespace, env={"EC2_TERMINAL_OPERATOR_NETWORK_POLICY": json.dumps(egress)})
    kube_cluster.apply(key_secret(key=sshd.client_key_path.read_bytes()), namespace=namespace)
    manifest = session_manifest(
        "live",
        target={"host": sshd.host, "port": sshd.port, "user": sshd.user},
        hostKey={"policy": "Fingerprint", "fingerprint": sshd.host_key_sha256},
        lifetime={"maxDurationSeconds": 600, "idleTimeoutSeconds": 10},
    )
    kube_cluster.apply(manifest, namespace=namespace)
    wait_phase(kube_cluster, namespace, "live", "Ready")

    # Play the kubelet for the pod the operator created.
    pod = kube_cluster.kubectl_json("get", "pod", "live", namespace=namespace)
    secrets = {
        name: _secret_data(kube_cluster, namespace, name) for name in ("live-token", "ssh-key")
    }
    mounts = materialize_volumes(pod, secrets, tmp_path / "volumes")
    env = pod_environment(pod, mounts, namespace=namespace)
    api = urlsplit(kube_cluster.server)
    port = free_port()
    env.update(
        EC2_TERMINAL_LISTEN_HOST="127.0.0.1",
        EC2_TERMINAL_LISTEN_PORT=str(port),
        KUBERNETES_SERVICE_HOST=str(api.hostname),
        KUBERNETES_SERVICE_PORT=str(api.port),
        EC2_TERMINAL_SERVICE_ACCOUNT_DIR=str(
            _service_account_dir(
                kube_cluster, namespace, pod["spec"]["serviceAccountName"], tmp_path / "sa"
            )
        ),
        EC2_TERMINAL_ACTIVITY_INTERVAL="0.5",
        PATH=str(Path(sys.executable).parent),
    )
    log_path = tmp_path / "server.log"
    with pod_command_running(pod, env, log_path):
        token = secrets["live-token"]["token"].decode()
        base_url = f"http://127.0.0.1:{port}{env['EC2_TERMINAL_BASE_PATH']}"
        client = await open_client(base_url, token)
        try:
            await client.hello()
            await client.send_input("echo loop-$((6*7))\n")
            await client.until_text("loop-42")

            def status_field(field: str) -> Any:
                return get_session(kube_cluster, namespace, "live")["status"].get(field)

            await _poll(lambda: status_field("activeConnections") == 1, "one connection")
        finally:
            await client.ws.close()
        await _poll(lambda: status_field("activeConnections") == 0, "no connection")
        assert status_field("lastActivityTime")
        ts = await _poll_session(kube_cluster, namespace, "Expired")
        expired = condition(ts, "Expired")
        assert expired["reason"] == "IdleTimeout", expired
    assert token not in log_path.read_text()


async def _poll(predicate: Callable[[], object], message: str, timeout: float = 40) -> object:
    """wait_for off the event loop, so the WebSocket client keeps running."""
    return await asyncio.to_thread(wait_for, predicate, timeout, 0.2, message)


async def _poll_session(cluster: KubeCluster, namespace: str, phase: str) -> dict[str, Any]:
    return await asyncio.to_thread(wait_phase, cluster, namespace, "live", phase, 40)
