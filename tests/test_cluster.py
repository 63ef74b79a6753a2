"""The local control plane behaves like a real cluster where operators tend to break."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_kube import (
    HACK_CLUSTER,
    ROOT,
    KubeCluster,
    KubectlError,
    check_test_cluster,
    cluster_env,
    wait_for,
)

pytestmark = pytest.mark.cluster

RESTRICTED_CONTAINER: dict[str, Any] = {
    "name": "app",
    # kwok fakes the kubelet: the image is never pulled, so a name that resolves nowhere is fine.
    "image": "registry.invalid/ec2-terminal/test:1",
    "securityContext": {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}


def test_wait_for_returns_the_first_truthy_value() -> None:
    values = iter([0, None, ValueError("not yet"), "done", "later"])

    def next_value() -> object:
        value = next(values)
        if isinstance(value, Exception):
            raise value
        return value

    assert wait_for(next_value, timeout=5, interval=0) == "done"


def test_wait_for_times_out_with_the_message_and_last_error() -> None:
    def never() -> bool:
        raise RuntimeError("still broken")

    with pytest.raises(TimeoutError, match=r"the thing: not true after 0.2s.*still broken"):
        wait_for(never, timeout=0.2, interval=0.05, message="the thing")


def unreachable_cluster(server: str, tmp_path: Path) -> KubeCluster:
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    tools = cluster_env()
    return KubeCluster(
        config,
        server,
        Path(tools["EC2_TERMINAL_KUBECTL"]),
        Path(tools["EC2_TERMINAL_HELM"]),
        dict(os.environ),
    )


def test_fixture_refuses_a_server_that_is_not_loopback(tmp_path: Path) -> None:
    # Refused before any request: the address is never contacted.
    cluster = unreachable_cluster("https://203.0.113.10:6443", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="not a loopback address"):
        check_test_cluster(cluster)


def test_fixture_refuses_a_loopback_server_without_the_marker(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        cluster = unreachable_cluster(f"https://127.0.0.1:{port}", tmp_path)
        with pytest.raises(pytest.fail.Exception, match="no ConfigMap kube-system/"):
            check_test_cluster(cluster)


def pinned_kube_version() -> str:
    for line in (ROOT / "hack/versions.env").read_text().splitlines():
        if line.startswith("KUBE_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("KUBE_VERSION missing from hack/versions.env")


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [RESTRICTED_CONTAINER],
                },
            },
        },
    }


def test_cluster_runs_the_pinned_version_on_two_kwok_nodes(kube_cluster: KubeCluster) -> None:
    version = kube_cluster.kubectl_json("version")
    assert version["serverVersion"]["gitVersion"] == pinned_kube_version()
    nodes = kube_cluster.kubectl_json("get", "nodes", "-l", "type=kwok")["items"]
    ready = {
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    }
    assert ready == {"kwok-node-0", "kwok-node-1"}


def test_deployment_becomes_available_on_kwok_nodes(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    kube_cluster.apply(deployment("web", 2), namespace=namespace)

    def available() -> bool:
        status = kube_cluster.kubectl_json("get", "deployment", "web", namespace=namespace)[
            "status"
        ]
        return bool(status.get("availableReplicas") == 2)

    wait_for(available, timeout=60, message="deployment web available")
    pods = kube_cluster.kubectl_json("get", "pods", "-l", "app=web", namespace=namespace)["items"]
    assert len(pods) == 2
    assert {p["status"]["phase"] for p in pods} == {"Running"}
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0", "kwok-node-1"}


def test_garbage_collector_deletes_dependents(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.kubectl("create", "configmap", "owner", namespace=namespace)
    uid = kube_cluster.kubectl_json("get", "configmap", "owner", namespace=namespace)["metadata"][
        "uid"
    ]
    owner_ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    kube_cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dependent", "ownerReferences": [owner_ref]},
            "data": {"k": "v"},
        },
        namespace=namespace,
    )
    kube_cluster.apply(deployment("cascade", 1), namespace=namespace)
    wait_for(
        lambda: kube_cluster.kubectl(
            "get", "pods", "-l", "app=cascade", "-o", "name", namespace=namespace
        ),
        timeout=60,
        message="pod of deployment cascade",
    )

    kube_cluster.kubectl("delete", "configmap", "owner", "--wait=false", namespace=namespace)
    kube_cluster.kubectl("delete", "deployment", "cascade", "--wait=false", namespace=namespace)

    def gone(*args: str) -> bool:
        out = kube_cluster.kubectl(
            "get", *args, "--ignore-not-found", "-o", "name", namespace=namespace
        )
        return out.strip() == ""

    wait_for(
        lambda: gone("configmap", "dependent"), timeout=60, message="dependent ConfigMap collected"
    )
    wait_for(
        lambda: gone("replicasets", "-l", "app=cascade"), timeout=60, message="ReplicaSet collected"
    )
    wait_for(lambda: gone("pods", "-l", "app=cascade"), timeout=60, message="pods collected")


def cronjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {
            "schedule": "* * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "automountServiceAccountToken": False,
                            "containers": [RESTRICTED_CONTAINER],
                        }
                    },
                }
            },
        },
    }


def job_complete(kube_cluster: KubeCluster, namespace: str, name: str) -> bool:
    job = kube_cluster.kubectl_json("get", "job", name, namespace=namespace)
    conditions = job.get("status", {}).get("conditions", [])
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conditions)


def test_job_created_from_cronjob_completes(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.apply(cronjob("tick"), namespace=namespace)
    kube_cluster.kubectl("create", "job", "manual", "--from=cronjob/tick", namespace=namespace)
    job = kube_cluster.kubectl_json("get", "job", "manual", namespace=namespace)
    assert [o["name"] for o in job["metadata"]["ownerReferences"]] == ["tick"]
    # kwok moves pods owned by a Job to Succeeded, so the Job controller sees it complete.
    wait_for(
        lambda: job_complete(kube_cluster, namespace, "manual"), timeout=60, message="job complete"
    )


def test_cronjob_schedule_creates_a_job(kube_cluster: KubeCluster, namespace: str) -> None:
    kube_cluster.apply(cronjob("every-minute"), namespace=namespace)

    def scheduled_job() -> str:
        jobs = kube_cluster.kubectl_json("get", "jobs", namespace=namespace)["items"]
        owned = [
            j["metadata"]["name"]
            for j in jobs
            if any(o["name"] == "every-minute" for o in j["metadata"].get("ownerReferences", []))
        ]
        return owned[0] if owned else ""

    # The controller fires on minute boundaries: at most a minute away, plus its sync delay.
    name = wait_for(scheduled_job, timeout=90, interval=1, message="scheduled job")
    wait_for(
        lambda: job_complete(kube_cluster, namespace, name), timeout=60, message="job complete"
    )


def test_crd_cel_rule_refuses_a_bad_object(kube_cluster: KubeCluster, namespace: str) -> None:
    group = f"t{secrets.token_hex(3)}.cel.ec2-terminal.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["min", "max"],
                                    "properties": {
                                        "min": {"type": "integer"},
                                        "max": {"type": "integer"},
                                    },
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "min must not exceed max",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    kube_cluster.apply(crd)
    try:
        kube_cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=30s"
        )

        def widget(name: str, low: int, high: int) -> dict[str, Any]:
            return {
                "apiVersion": f"{group}/v1",
                "kind": "Widget",
                "metadata": {"name": name},
                "spec": {"min": low, "max": high},
            }

        # Discovery of a new group can lag Established by a moment.
        wait_for(lambda: kube_cluster.apply(widget("good", 1, 2), namespace=namespace), timeout=30)
        with pytest.raises(KubectlError) as refused:
            kube_cluster.apply(widget("bad", 3, 2), namespace=namespace)
        assert "min must not exceed max" in refused.value.stderr
        names = kube_cluster.kubectl("get", f"widgets.{group}", "-o", "name", namespace=namespace)
        assert names.split() == [f"widget.{group}/good"]
    finally:
        # Cluster-scoped: nothing else would remove it. Deleting it removes its objects too.
        kube_cluster.kubectl("delete", "crd", f"widgets.{group}", "--ignore-not-found")


def test_service_account_token_is_limited_by_rbac(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
) -> None:
    kube_cluster.kubectl("create", "serviceaccount", "reader", namespace=namespace)
    kube_cluster.kubectl(
        "create", "role", "read-configmaps", "--verb=get,list", "--resource=configmaps",
        namespace=namespace,
    )  # fmt: skip
    kube_cluster.kubectl(
        "create", "rolebinding", "reader", "--role=read-configmaps",
        f"--serviceaccount={namespace}:reader", namespace=namespace,
    )  # fmt: skip
    kube_cluster.kubectl("create", "configmap", "visible", namespace=namespace)
    kube_cluster.kubectl(
        "create", "secret", "generic", "hidden", "--from-literal=k=v", namespace=namespace
    )
    # TokenRequest API: a short-lived, audience-bound token, not a legacy Secret token.
    token = kube_cluster.kubectl(
        "create", "token", "reader", "--duration=10m", namespace=namespace
    ).strip()
    ca = kube_cluster.kubectl(
        "config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.certificate-authority}"
    )
    config = tmp_path / "reader.kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": kube_cluster.server, "certificate-authority": ca},
                    }
                ],
                "users": [{"name": "reader", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "c",
                        "context": {"cluster": "c", "user": "reader", "namespace": namespace},
                    }
                ],
                "current-context": "c",
            }
        )
    )
    config.chmod(0o600)

    def as_reader(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**kube_cluster.env, "KUBECONFIG": str(config)}
        return subprocess.run(
            [str(kube_cluster.kubectl_path), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )

    allowed = as_reader("get", "configmap", "visible", "-o", "name")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip() == "configmap/visible"
    me = f"system:serviceaccount:{namespace}:reader"
    for denied in (
        as_reader("get", "secret", "hidden"),
        as_reader("create", "configmap", "new"),
        as_reader("get", "configmaps", "-n", "default"),
    ):
        assert denied.returncode != 0
        assert "forbidden" in denied.stderr.lower()
        assert me in denied.stderr


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this machine (IPv4 and IPv6)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def running(pid: int) -> bool:
    """True unless PID is gone or has exited (a zombie only waits for init to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_down_leaves_no_process_and_no_listening_port(tmp_path: Path) -> None:
    # Its own instance in its own directory and ports, so the session's cluster is untouched.
    run_dir = tmp_path / "cluster"
    env = {**os.environ, "EC2_TERMINAL_CLUSTER_DIR": str(run_dir)}
    env.pop("EC2_TERMINAL_APISERVER_PORT", None)

    def hack_cluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HACK_CLUSTER), *args], env=env, capture_output=True, text=True, timeout=240
        )

    ports: set[int] = set()
    pids: list[int] = []
    try:
        up = hack_cluster("up", "--no-build")
        assert up.returncode == 0, up.stderr
        assert hack_cluster("status").returncode == 0
        state = json.loads((run_dir / "state.json").read_text())
        ports = set(state["ports"].values())
        pids = [p["pid"] for p in state["processes"].values()]
        assert len(pids) == 5
        assert ports <= listening_ports()
        assert set(pids) <= set(processes_mentioning(str(run_dir)))
    finally:
        down = hack_cluster("down")
    assert down.returncode == 0, down.stderr
    assert processes_mentioning(str(run_dir)) == []
    assert [pid for pid in pids if running(pid)] == []
    assert ports.isdisjoint(listening_ports())
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0
    assert hack_cluster("status").returncode != 0
