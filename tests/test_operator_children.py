"""How the operator keeps a session's children, on the real API server.

What these check depends on how the API server applies the operator's writes (strategic
merge patch for built-in kinds, ownership, deletion), so no fake stands in for it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures_kube import KubeCluster, wait_for
from tests.fixtures_operator import (
    OperatorFactory,
    OperatorProcess,
    condition,
    exists,
    get_session,
    key_secret,
    passed_since,
    patch_spec,
    ready_session,
    report_activity,
    session_manifest,
    wait_events,
    wait_phase,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# What the periodic recheck restores: every child but the pod, the Ingress and the Service
# (a missing Service fails the route check, which restores everything at once).
SUPPORT = [
    ("networkpolicy", "back"),
    ("secret", "back-token"),
    ("lease", "back-activity"),
    ("serviceaccount", "back-session"),
    ("role", "back-session"),
    ("rolebinding", "back-session"),
]


def _get(cluster: KubeCluster, namespace: str, kind: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = cluster.kubectl_json("get", kind, name, namespace=namespace)
    return obj


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(r["uid"] == uid for r in obj["metadata"].get("ownerReferences") or ())


def test_deleted_children_come_back_without_a_spec_change(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    ts = ready_session(kube_cluster, namespace, "back")
    uid = ts["metadata"]["uid"]
    pod_uid = _get(kube_cluster, namespace, "pod", "back")["metadata"]["uid"]
    for kind, name in SUPPORT:
        kube_cluster.kubectl("delete", kind, name, "--wait=true", namespace=namespace)

    def restored(children: list[tuple[str, str]]) -> bool:
        return all(
            exists(kube_cluster, namespace, kind, name)
            and _owned_by(_get(kube_cluster, namespace, kind, name), uid)
            for kind, name in children
        )

    # The pod stays ready, so only the periodic recheck (every 12 passes of 1 s) finds them.
    wait_for(lambda: restored(SUPPORT), timeout=60, message="deleted children back, owned")
    kube_cluster.kubectl("delete", "service", "back", "--wait=true", namespace=namespace)
    wait_for(lambda: restored([("service", "back")]), timeout=30, message="Service back")
    assert _get(kube_cluster, namespace, "pod", "back")["metadata"]["uid"] == pod_uid
    assert wait_phase(kube_cluster, namespace, "back", "Ready")


def test_ingress_fields_dropped_from_the_spec_are_removed_from_the_ingress(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    limit = "nginx.ingress.kubernetes.io/limit-rps"
    ts = ready_session(
        kube_cluster,
        namespace,
        "ing",
        exposure={
            "type": "Ingress",
            "host": "ing.example.com",
            "ingressClassName": "nginx",
            "tls": {"secretName": "ing-tls"},
            "annotations": {limit: "20"},
        },
    )
    ingress = _get(kube_cluster, namespace, "ingress", "ing")
    assert ingress["spec"]["tls"] == [{"hosts": ["ing.example.com"], "secretName": "ing-tls"}]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["metadata"]["annotations"][limit] == "20"

    patch_spec(
        kube_cluster,
        namespace,
        "ing",
        exposure={"ingressClassName": None, "tls": None, "annotations": None},
    )

    def pruned() -> dict[str, Any]:
        ing = _get(kube_cluster, namespace, "ingress", "ing")
        gone = "tls" not in ing["spec"] and "ingressClassName" not in ing["spec"]
        return ing if gone and limit not in ing["metadata"]["annotations"] else {}

    ingress = wait_for(pruned, timeout=60, message="tls, class and annotation removed")
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" in ingress["metadata"]["annotations"]
    assert ingress["spec"]["rules"][0]["host"] == "ing.example.com"
    assert _owned_by(ingress, ts["metadata"]["uid"])
    url = f"http://ing.example.com/t/{namespace}/ing/"  # no tls: http
    wait_for(
        lambda: get_session(kube_cluster, namespace, "ing")["status"]["url"] == url,
        message="status.url without tls",
    )

    # Leaving Ingress exposure removes the Ingress.
    patch_spec(kube_cluster, namespace, "ing", exposure={"type": "ClusterIP", "host": None})
    wait_for(
        lambda: not exists(kube_cluster, namespace, "ingress", "ing"), message="Ingress deleted"
    )
    wait_events(kube_cluster, namespace, "ing", ("Normal", "IngressDeleted"))
    assert wait_phase(kube_cluster, namespace, "ing", "Ready")["status"].get("ingressName") is None


def test_an_operator_upgrade_replaces_a_pod_only_while_nobody_is_connected(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    old = operator_factory(namespace)
    ready_session(kube_cluster, namespace, "up")
    pod = _get(kube_cluster, namespace, "pod", "up")
    assert pod["spec"]["containers"][0]["image"] == "ec2-terminal:test"
    report_activity(kube_cluster, namespace, "up", 1)
    wait_for(
        lambda: get_session(kube_cluster, namespace, "up")["status"].get("activeConnections") == 1,
        message="one connection reported",
    )
    # A new operator version (here: a new default session image) while a terminal is open.
    old.stop()
    operator_factory(namespace, env={"EC2_TERMINAL_OPERATOR_SESSION_IMAGE": "ec2-terminal:new"})
    report_activity(kube_cluster, namespace, "up", 2)
    wait_for(
        lambda: get_session(kube_cluster, namespace, "up")["status"].get("activeConnections") == 2,
        message="the new operator saw the connections",
    )
    passed_since(kube_cluster, namespace, "up")
    assert _get(kube_cluster, namespace, "pod", "up")["metadata"]["uid"] == pod["metadata"]["uid"]

    # The user disconnects: the pod is brought up to date.
    report_activity(kube_cluster, namespace, "up", 0)

    def replaced() -> dict[str, Any]:
        new = kube_cluster.kubectl_json(
            "get", "pod", "--selector=ec2-terminal.io/session=up", namespace=namespace
        )["items"]
        fresh = [p for p in new if p["metadata"]["uid"] != pod["metadata"]["uid"]]
        return fresh[0] if fresh else {}

    new_pod = wait_for(replaced, timeout=60, message="pod replaced once nobody is connected")
    assert new_pod["spec"]["containers"][0]["image"] == "ec2-terminal:new"
    wait_events(kube_cluster, namespace, "up", ("Normal", "PodReplaced"))
    wait_phase(kube_cluster, namespace, "up", "Ready")


def test_suspended_and_expired_sessions_read_no_secrets(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """A Secret changed while no pod is wanted leaves the last verdict standing.

    Had a pass read it, CredentialsReady would turn False: removing the opt-in label makes
    the Secret unusable, and deleting it makes it missing.
    """
    kube_cluster.apply(key_secret("brief-key"), namespace=namespace)
    kube_cluster.apply(
        session_manifest(
            "brief",
            credentialsSecretRef={"name": "brief-key"},
            lifetime={"maxDurationSeconds": 10, "idleTimeoutSeconds": 10},
        ),
        namespace=namespace,
    )
    ready_session(kube_cluster, namespace, "nap")
    patch_spec(kube_cluster, namespace, "nap", suspend=True)
    wait_phase(kube_cluster, namespace, "nap", "Suspended")
    kube_cluster.kubectl(
        "label", "secret", "ssh-key", "ec2-terminal.io/usable-by-sessions-", namespace=namespace
    )
    ts = passed_since(kube_cluster, namespace, "nap")
    creds = condition(ts, "CredentialsReady")
    assert (creds["status"], creds["reason"]) == ("True", "SecretFound"), creds
    assert ts["status"]["phase"] == "Suspended"

    wait_phase(kube_cluster, namespace, "brief", "Expired", timeout=40)
    kube_cluster.kubectl("delete", "secret", "brief-key", namespace=namespace)
    ts = passed_since(kube_cluster, namespace, "brief")
    creds = condition(ts, "CredentialsReady")
    assert (creds["status"], creds["reason"]) == ("True", "SecretFound"), creds

    # A session that wants its pod again reads the Secret, and finds it unusable now.
    patch_spec(kube_cluster, namespace, "nap", suspend=False)
    ts = wait_phase(kube_cluster, namespace, "nap", "Pending")
    assert condition(ts, "CredentialsReady")["reason"] == "SecretNotUsable"
