"""The real node: a pod runs in containerd, probes are real, a Service and an Ingress reach it."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from hack.realnode.images import HELLO_IMAGE
from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_realnode import RealNode

pytestmark = [pytest.mark.realnode, pytest.mark.slow]


def hello_pod(
    node: RealNode, name: str, ready_path: str = "/healthz", image: str = HELLO_IMAGE
) -> dict[str, Any]:
    """The hello image on the real node, as restricted as Pod Security's restricted profile asks."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            **node.placement(),
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 5,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "hello",
                    "image": image,
                    # Nothing can be pulled here: the image was imported into containerd.
                    "imagePullPolicy": "Never",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {
                        "httpGet": {"path": ready_path, "port": "http"},
                        "periodSeconds": 1,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 5,
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]},
    }


def pod(cluster: KubeCluster, namespace: str, name: str) -> Any:
    return cluster.kubectl_json("get", "pod", name, namespace=namespace)


def ready(cluster: KubeCluster, namespace: str, name: str) -> bool:
    conditions = pod(cluster, namespace, name).get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def run(
    cluster: KubeCluster, namespace: str, manifest: dict[str, Any], *others: dict[str, Any]
) -> Any:
    """Applies a pod (and OTHERS, such as its Service) and returns the pod once it is Ready."""
    name = manifest["metadata"]["name"]
    cluster.apply([manifest, *others], namespace=namespace)
    wait_for(partial(ready, cluster, namespace, name), timeout=90, message=f"{name} Ready")
    return pod(cluster, namespace, name)


def pod_containers(node: RealNode, uid: str) -> set[str]:
    """IDs of the containers containerd holds for a pod: its sandbox and its containers."""
    out = node.ctr("containers", "list", "--quiet", f'labels."io.kubernetes.pod.uid"=={uid}')
    return set(out.split())


def containers(node: RealNode) -> set[str]:
    """IDs of every container containerd holds."""
    return set(node.ctr("containers", "list", "--quiet").split())


def running_tasks(node: RealNode) -> set[str]:
    """IDs of the containers whose process containerd runs."""
    rows = [line.split() for line in node.ctr("tasks", "list").splitlines()[1:]]
    return {row[0] for row in rows if row[-1:] == ["RUNNING"]}


def test_pod_runs_in_containerd_and_turns_ready_through_its_probe(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode
) -> None:
    """Scheduled by its nodeSelector and toleration; Ready only once its HTTP probe passes."""
    status = run(kube_cluster, namespace, hello_pod(real_node, "hello"))
    assert status["spec"]["nodeName"] == real_node.name
    container = status["status"]["containerStatuses"][0]
    assert container["ready"]
    assert container["containerID"].startswith("containerd://")
    # The container the kubelet reports is one containerd runs.
    assert container["containerID"].removeprefix("containerd://") in running_tasks(real_node)
    # The API server reaches the kubelet: the container's own output.
    logs = kube_cluster.kubectl("logs", "hello", namespace=namespace)
    assert "hello: listening on :8080" in logs


def test_failing_readiness_probe_keeps_pod_unready(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode
) -> None:
    """A probe on a path the server answers 404 keeps the running pod out of Ready."""
    kube_cluster.apply(hello_pod(real_node, "unready", ready_path="/nope"), namespace=namespace)

    def probe_failed() -> bool:
        events = kube_cluster.kubectl_json(
            "get", "events", "--field-selector=involvedObject.name=unready", namespace=namespace
        )
        return any(
            e["reason"] == "Unhealthy" and "statuscode: 404" in e["message"]
            for e in events["items"]
        )

    wait_for(probe_failed, timeout=90, message="the kubelet's readiness probe failed with 404")
    state = pod(kube_cluster, namespace, "unready")["status"]
    assert state["phase"] == "Running"
    assert not state["containerStatuses"][0]["ready"]


def test_service_cluster_ip_reaches_the_pod_through_kube_proxy(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode
) -> None:
    """From the node (as a host process there sees it) and from another pod."""
    run(kube_cluster, namespace, hello_pod(real_node, "web"), service("web"))
    run(kube_cluster, namespace, hello_pod(real_node, "client"))
    ip = kube_cluster.kubectl_json("get", "service", "web", namespace=namespace)["spec"][
        "clusterIP"
    ]
    url = f"http://{ip}/"
    script = (
        f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    )

    def from_node() -> str:
        res = real_node.in_node("python3", "-c", script)
        return res.stdout if res.returncode == 0 else ""

    assert "hello from web" in wait_for(from_node, timeout=30, message=f"{url} from the node")
    from_pod = kube_cluster.kubectl(
        "exec", "client", "--", "/hello", "get", url, namespace=namespace
    )
    assert from_pod.strip() == "hello from web"


def test_pod_reaches_the_api_server_through_the_kubernetes_service(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode
) -> None:
    """In-cluster clients work: a pod's ServiceAccount token and CA at the `kubernetes` Service."""
    spec = hello_pod(real_node, "apiclient")
    spec["spec"]["automountServiceAccountToken"] = True
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    spec["spec"]["containers"][0]["env"] = [
        {"name": "HELLO_CA_FILE", "value": f"{account}/ca.crt"},
        {"name": "HELLO_TOKEN_FILE", "value": f"{account}/token"},
    ]
    run(kube_cluster, namespace, spec)
    ip = kube_cluster.kubectl_json("get", "service", "kubernetes", namespace="default")["spec"][
        "clusterIP"
    ]
    out = kube_cluster.kubectl(
        "exec", "apiclient", "--", "/hello", "get", f"https://{ip}/api", namespace=namespace
    )
    assert json.loads(out)["kind"] == "APIVersions"


def test_ingress_routes_through_the_controller(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode
) -> None:
    """An Ingress of the controller's class reaches the pod; a host it does not name is a 404."""
    host = f"{namespace}.ec2-terminal.test"
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "web"},
        "spec": {
            "ingressClassName": real_node.ingress_class,
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "web", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    run(kube_cluster, namespace, hello_pod(real_node, "web"), service("web"), ingress)

    def through_ingress() -> str:
        resp = httpx.get(real_node.ingress_url + "/", headers={"Host": host}, timeout=5)
        return resp.text if resp.status_code == 200 else ""

    assert wait_for(through_ingress, timeout=60, message="the Ingress route") == "hello from web\n"
    other = httpx.get(real_node.ingress_url + "/", headers={"Host": "nowhere.test"}, timeout=5)
    assert other.status_code == 404


def test_deleting_the_pod_removes_its_container(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode
) -> None:
    """Deleting the pod removes its container from containerd and stops its sandbox."""
    status = run(kube_cluster, namespace, hello_pod(real_node, "gone"))
    container = status["status"]["containerStatuses"][0]["containerID"].removeprefix(
        "containerd://"
    )
    ids = pod_containers(real_node, status["metadata"]["uid"])
    assert container in ids
    assert len(ids) == 2, "the sandbox and the hello container"
    assert ids <= running_tasks(real_node)
    kube_cluster.kubectl("delete", "pod", "gone", "--wait=true", namespace=namespace, timeout=90)

    def gone() -> bool:
        return container not in containers(real_node) and not ids & running_tasks(real_node)

    # The sandbox itself stays, stopped, until the kubelet's garbage collection (once a minute).
    wait_for(gone, timeout=30, message="the container removed and the sandbox stopped")


def test_image_saved_by_podman_imports_and_runs(
    kube_cluster: KubeCluster, namespace: str, real_node: RealNode, tmp_path: Path
) -> None:
    """What `podman save --format oci-archive` writes (as hack/image does) runs on the node."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.fail("podman is not installed (hack/setup installs it)", pytrace=False)
    name = f"localhost/ec2-terminal/hello-podman:{namespace}"
    archive = tmp_path / "saved.tar"
    # A private store, so the machine's podman images are left alone; podman refuses a runroot
    # longer than 50 characters, which pytest's tmp_path is.
    with tempfile.TemporaryDirectory(prefix="ec2t-podman-", dir="/tmp") as runroot:
        store = [podman, f"--root={tmp_path / 'root'}", f"--runroot={runroot}"]
        for args in (
            ["load", "--quiet", f"--input={real_node.images[HELLO_IMAGE]}"],
            ["tag", HELLO_IMAGE, name],
            ["save", "--quiet", "--format=oci-archive", f"--output={archive}", name],
        ):
            argv = [*store, "--storage-driver=vfs", *args]
            res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            assert res.returncode == 0, f"podman {args[0]}: {res.stderr}"
    assert real_node.import_image(archive) == [name]
    run(kube_cluster, namespace, hello_pod(real_node, "saved", image=name))
