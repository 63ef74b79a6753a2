"""The operator against the real control plane (kube-apiserver, etcd, controller-manager, kwok)."""

from __future__ import annotations

import base64
import datetime
import json
from pathlib import Path
from typing import Any

import pytest
from ec2_terminal_operator import resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.spec import parse_session

from tests.fixtures_kube import KubeCluster, KubectlError, wait_for
from tests.fixtures_operator import (
    ROOT,
    SESSION_DOMAIN,
    TEST_IMAGE_PREFIX,
    TEST_POLICY,
    OperatorFactory,
    OperatorProcess,
    condition,
    exists,
    get_session,
    key_secret,
    names,
    passed_since,
    patch_spec,
    ready_session,
    report_activity,
    session_manifest,
    wait_events,
    wait_phase,
    write_health_check,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CHILDREN = [
    ("secret", "{n}-token"),
    ("pod", "{n}"),
    ("service", "{n}"),
    ("ingress", "{n}"),
    ("serviceaccount", "{n}-session"),
    ("role", "{n}-session"),
    ("rolebinding", "{n}-session"),
    ("lease", "{n}-activity"),
    ("networkpolicy", "{n}"),
]


def utc(raw: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))


def test_valid_session_becomes_ready_with_owned_children(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    manifest = session_manifest(
        "web",
        exposure={
            "type": "Ingress",
            "ingressClassName": "nginx",
            "host": "term.example.com",
            "tls": {"secretName": "term-tls"},
        },
    )
    kube_cluster.apply(manifest, namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "web", "Ready")
    uid = ts["metadata"]["uid"]
    status = ts["status"]
    assert status["url"] == f"https://term.example.com/t/{namespace}/web/"
    assert status["tokenSecretRef"] == {"name": "web-token", "key": "token"}
    assert status["observedGeneration"] == ts["metadata"]["generation"]
    assert status["podName"] == "web"
    assert status["ingressName"] == "web"
    assert status["target"] == "ec2-user@10.0.0.5:22"
    for kind in ("CredentialsReady", "PodReady", "RouteReady", "Ready"):
        c = condition(ts, kind)
        assert c["status"] == "True", c
        assert c["observedGeneration"] == ts["metadata"]["generation"]
        assert c["lastTransitionTime"]
    assert condition(ts, "Expired")["status"] == "False"
    assert condition(ts, "TargetReachable")["status"] == "Unknown"
    assert "ec2-terminal.io/cleanup" in ts["metadata"]["finalizers"]
    # No handler needs kopf's diff-base: no annotation (and no PATCH) for it.
    annotations = ts["metadata"].get("annotations") or {}
    assert not [a for a in annotations if a.endswith("last-handled-configuration")], annotations

    for kind, pattern in CHILDREN:
        obj = kube_cluster.kubectl_json("get", kind, pattern.format(n="web"), namespace=namespace)
        refs = obj["metadata"].get("ownerReferences") or []
        assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [
            ("TerminalSession", uid, True)
        ], kind

    pod = kube_cluster.kubectl_json("get", "pod", "web", namespace=namespace)
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["ec2-terminal", "serve"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["EC2_TERMINAL_BASE_PATH"] == f"/t/{namespace}/web/"
    assert env["EC2_TERMINAL_ALLOWED_ORIGINS"] == "https://term.example.com"
    assert env["EC2_TERMINAL_ALLOWED_HOSTS"] == ",".join(
        [
            "term.example.com",
            "web",
            f"web.{namespace}",
            f"web.{namespace}.svc",
            f"web.{namespace}.svc.cluster.local",
        ]
    )

    ingress = kube_cluster.kubectl_json("get", "ingress", "web", namespace=namespace)
    ann = ingress["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == f"/t/{namespace}/web"
    assert ingress["spec"]["tls"] == [{"hosts": ["term.example.com"], "secretName": "term-tls"}]

    token = kube_cluster.kubectl_json("get", "secret", "web-token", namespace=namespace)
    assert len(base64.b64decode(token["data"]["token"])) >= 32

    table = kube_cluster.kubectl("get", "ts", "web", namespace=namespace)
    header, row = table.strip().splitlines()
    assert header.split() == ["NAME", "PHASE", "TARGET", "URL", "AGE"]
    assert row.split()[:4] == ["web", "Ready", "ec2-user@10.0.0.5:22", status["url"]]
    # The short name and the category both find it.
    assert "web" in kube_cluster.kubectl("get", "ec2-terminal", "-o", "name", namespace=namespace)

    wanted = [("Normal", r) for r in ("ChildrenCreated", "PodCreated", "SessionReady")]
    got = wait_events(kube_cluster, namespace, "web", *wanted)
    # One Event for the children a pass made, and none posted twice on the way to Ready.
    assert len(got) == len(set(got)), got
    selector = "involvedObject.name=web,reason=ChildrenCreated"
    items = kube_cluster.kubectl_json(
        "get", "events", f"--field-selector={selector}", namespace=namespace
    )["items"]
    message = items[0]["message"]
    for created in ("NetworkPolicy web", "Secret web-token", "Service web", "Ingress web"):
        assert created in message, message


def _invalid(name: str, **spec: Any) -> dict[str, Any]:
    return session_manifest(name, **spec)


def _without(key: str, **spec: Any) -> dict[str, Any]:
    m = session_manifest("x", **spec)
    del m["spec"][key]
    return m


INVALID = [
    (
        _invalid("bad-id", target={"instanceId": "i-xyz", "region": "us-east-1"}),
        "target.instanceId must look like i-0123456789abcdef0",
    ),
    (
        _invalid(
            "both", target={"instanceId": "i-0123456789abcdef0", "region": "us-east-1", "host": "h"}
        ),
        "set exactly one of target.instanceId or target.host",
    ),
    (_invalid("neither", target={"user": "ec2-user"}), "set exactly one of target.instanceId"),
    (
        _without("credentialsSecretRef"),
        "credentialsSecretRef is required when target.accessMethod is SSHKey",
    ),
    (
        _invalid("big", lifetime={"maxDurationSeconds": 10_000_000}),
        "spec.lifetime.maxDurationSeconds: Invalid value",
    ),
    (
        _invalid("idle", lifetime={"maxDurationSeconds": 60, "idleTimeoutSeconds": 600}),
        "lifetime.idleTimeoutSeconds must not exceed lifetime.maxDurationSeconds",
    ),
    (_invalid("port", target={"host": "h", "port": 70000}), "spec.target.port: Invalid value"),
    (
        _invalid("fp", hostKey={"policy": "Fingerprint", "fingerprint": "MD5:aa"}),
        "hostKey.fingerprint must be SHA256:",
    ),
    (
        _invalid("console", hostKey={"policy": "ConsoleOutput"}),
        "hostKey.policy ConsoleOutput needs target.instanceId",
    ),
    (
        _invalid("region", target={"instanceId": "i-0123456789abcdef0"}),
        "target.region is required with target.instanceId",
    ),
    (
        _invalid("eic", target={"host": "h", "accessMethod": "EC2InstanceConnect"}),
        "target.accessMethod EC2InstanceConnect needs target.instanceId",
    ),
    (_invalid("Upper-Case"), "metadata.name must start with a letter"),
    (_invalid("x" * 51), "metadata.name must be at most 50 characters"),
    (
        _invalid("prefix", exposure={"pathPrefix": "/t/"}),
        "exposure.pathPrefix must be empty or a path like /t",
    ),
    (
        _invalid(
            "snippet",
            exposure={
                "type": "Ingress",
                "annotations": {"nginx.ingress.kubernetes.io/Server-Snippet": "return 200;"},
            },
        ),
        "exposure.annotations may only set these keys",
    ),
    (
        _invalid(
            "auth-url",
            exposure={
                "type": "Ingress",
                "annotations": {"nginx.ingress.kubernetes.io/auth-url": "http://evil.example/"},
            },
        ),
        "exposure.annotations may only set these keys",
    ),
    (
        _invalid(
            "own-timeout",
            exposure={
                "type": "Ingress",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "1"},
            },
        ),
        "proxy-read-timeout and proxy-send-timeout are set by the operator",
    ),
    (
        _invalid(
            "body-size",
            exposure={
                "type": "Ingress",
                "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m; deny all"},
            },
        ),
        "nginx.ingress.kubernetes.io/proxy-buffer-size must be a size such as 8k or 10m",
    ),
    (
        _invalid("class", exposure={"type": "Ingress", "ingressClassName": "Bad Class"}),
        "exposure.ingressClassName must be a lowercase object name",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "message"), INVALID, ids=[m["metadata"]["name"][:12] for m, _ in INVALID]
)
def test_invalid_session_is_refused_with_its_message(
    kube_cluster: KubeCluster,
    terminalsession_crd: str,
    namespace: str,
    manifest: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(KubectlError) as info:
        kube_cluster.apply(manifest, namespace=namespace)
    assert message in info.value.stderr
    assert names(kube_cluster, namespace, "ts") == []


def test_target_is_immutable(
    kube_cluster: KubeCluster, terminalsession_crd: str, namespace: str
) -> None:
    kube_cluster.apply(session_manifest("fixed"), namespace=namespace)
    changed = session_manifest("fixed", target={"host": "10.0.0.6", "user": "ec2-user"})
    with pytest.raises(KubectlError) as info:
        kube_cluster.apply(changed, namespace=namespace)
    assert "target is immutable: create a new TerminalSession" in info.value.stderr
    # Other fields stay editable.
    kube_cluster.apply(session_manifest("fixed", suspend=True), namespace=namespace)
    assert get_session(kube_cluster, namespace, "fixed")["spec"]["target"]["host"] == "10.0.0.5"


def test_missing_secret_then_recovery(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(session_manifest("late"), namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "late", "Pending")
    creds = condition(ts, "CredentialsReady")
    assert creds["status"] == "False"
    assert creds["reason"] == "SecretNotFound"
    assert "'ssh-key' not found" in creds["message"]
    assert condition(ts, "Ready")["reason"] == "SecretNotFound"
    wait_events(kube_cluster, namespace, "late", ("Warning", "SecretNotFound"))
    assert not exists(kube_cluster, namespace, "pod", "late")

    kube_cluster.apply(key_secret(), namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "late", "Ready")
    assert condition(ts, "CredentialsReady")["reason"] == "SecretFound"


def test_max_duration_expires_and_keeps_the_record(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(
        session_manifest("brief", lifetime={"maxDurationSeconds": 10, "idleTimeoutSeconds": 10}),
        namespace=namespace,
    )
    # Keep it busy so only the maximum duration can end it.
    ready = wait_phase(kube_cluster, namespace, "brief", "Ready")
    report_activity(kube_cluster, namespace, "brief", 1)
    ts = wait_phase(kube_cluster, namespace, "brief", "Expired", timeout=40)
    expired = condition(ts, "Expired")
    assert expired["status"] == "True"
    assert expired["reason"] == "MaxDurationExceeded"
    started = utc(ready["status"]["startTime"])
    assert utc(expired["lastTransitionTime"]) >= started + datetime.timedelta(seconds=10)
    assert ts["status"]["expiresAt"] == ready["status"]["expiresAt"]
    wait_for(lambda: not exists(kube_cluster, namespace, "pod", "brief"), message="pod removed")
    # The object is kept as a record, with its Service and token.
    assert exists(kube_cluster, namespace, "service", "brief")
    assert get_session(kube_cluster, namespace, "brief")["status"]["phase"] == "Expired"


def test_idle_timeout_counts_from_reported_activity(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(
        session_manifest("idle", lifetime={"maxDurationSeconds": 600, "idleTimeoutSeconds": 10}),
        namespace=namespace,
    )
    wait_phase(kube_cluster, namespace, "idle", "Ready")
    # What the session pod's ActivityReporter writes: a connection, then none since `last`.
    report_activity(kube_cluster, namespace, "idle", 1)
    wait_for(
        lambda: (
            get_session(kube_cluster, namespace, "idle")["status"].get("activeConnections") == 1
        ),
        message="activeConnections reported",
    )
    last = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    report_activity(kube_cluster, namespace, "idle", 0, last.strftime("%Y-%m-%dT%H:%M:%SZ"))
    ts = wait_phase(kube_cluster, namespace, "idle", "Expired", timeout=40)
    expired = condition(ts, "Expired")
    assert expired["reason"] == "IdleTimeout"
    assert ts["status"]["lastActivityTime"] == last.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert utc(expired["lastTransitionTime"]) >= last + datetime.timedelta(seconds=10)
    assert ts["status"]["activeConnections"] == 0
    wait_for(lambda: not exists(kube_cluster, namespace, "pod", "idle"), message="pod removed")


def test_expiry_policy_delete_removes_the_session(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(
        session_manifest(
            "gone",
            lifetime={"maxDurationSeconds": 10, "idleTimeoutSeconds": 10, "onExpiry": "Delete"},
        ),
        namespace=namespace,
    )
    wait_phase(kube_cluster, namespace, "gone", "Ready")
    wait_for(lambda: not exists(kube_cluster, namespace, "ts", "gone"), timeout=40)
    wait_for(lambda: not exists(kube_cluster, namespace, "secret", "gone-token"), timeout=30)


def test_suspend_removes_only_the_pod(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    ready_session(kube_cluster, namespace, "nap")
    token_before = kube_cluster.kubectl_json("get", "secret", "nap-token", namespace=namespace)
    patch_spec(kube_cluster, namespace, "nap", suspend=True)
    ts = wait_phase(kube_cluster, namespace, "nap", "Suspended")
    assert condition(ts, "Ready")["reason"] == "Suspended"
    wait_for(lambda: not exists(kube_cluster, namespace, "pod", "nap"), message="pod removed")
    assert exists(kube_cluster, namespace, "service", "nap")
    patch_spec(kube_cluster, namespace, "nap", suspend=False)
    wait_phase(kube_cluster, namespace, "nap", "Ready")
    token_after = kube_cluster.kubectl_json("get", "secret", "nap-token", namespace=namespace)
    assert token_after["data"] == token_before["data"]


def test_startup_timeout_fails_then_recovers_when_fixed(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    # No node has this label: the pod stays Pending, as with an image that cannot start.
    kube_cluster.apply(
        session_manifest(
            "stuck",
            lifetime={"startupTimeoutSeconds": 10},
            pod={"nodeSelector": {"ec2-terminal.io/none": "true"}},
        ),
        namespace=namespace,
    )
    ts = wait_phase(kube_cluster, namespace, "stuck", "Failed", timeout=40)
    pod_ready = condition(ts, "PodReady")
    assert pod_ready["reason"] == "StartupTimeout"
    assert "not ready after 10s" in pod_ready["message"]
    assert "Unschedulable" in pod_ready["message"]
    wait_events(kube_cluster, namespace, "stuck", ("Warning", "StartupTimeout"))
    kube_cluster.kubectl(
        "patch",
        "ts",
        "stuck",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/spec/pod/nodeSelector"}]',
        namespace=namespace,
    )
    ts = wait_phase(kube_cluster, namespace, "stuck", "Ready", timeout=60)
    wait_events(kube_cluster, namespace, "stuck", ("Normal", "PodReplaced"))


def test_health_check_status_becomes_target_reachable(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    ready_session(kube_cluster, namespace, "probe")
    write_health_check(kube_cluster, namespace, "probe", "ok")
    wait_for(
        lambda: (
            condition(get_session(kube_cluster, namespace, "probe"), "TargetReachable")["status"]
            == "True"
        )
    )
    write_health_check(kube_cluster, namespace, "probe", "error", "connection refused")
    ts = wait_for(
        lambda: (
            (t := get_session(kube_cluster, namespace, "probe"))
            and condition(t, "TargetReachable")["status"] == "False"
            and t
        )
    )
    assert "connection refused" in condition(ts, "TargetReachable")["message"]
    assert ts["status"]["phase"] == "Ready"
    assert ts["status"]["healthCheck"]["taskId"] == "t1"


def test_deleting_the_session_removes_everything_it_owned(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    ready_session(kube_cluster, namespace, "bye", exposure={"type": "Ingress"})
    kube_cluster.kubectl("delete", "ts", "bye", "--wait=true", "--timeout=60s", namespace=namespace)

    def all_gone() -> bool:
        return not any(
            exists(kube_cluster, namespace, kind, pattern.format(n="bye"))
            for kind, pattern in CHILDREN
        )

    wait_for(all_gone, message="every child of bye deleted")
    # The user's own Secret is not the session's to delete.
    assert exists(kube_cluster, namespace, "secret", "ssh-key")
    # The last status went through the same writer as every other: conditions, and their
    # Events, say why the session stopped being Ready.
    wait_events(kube_cluster, namespace, "bye", ("Normal", "Terminating"))


def test_killed_operator_restarts_without_duplicates(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    count = 8
    first = operator_factory(namespace)
    kube_cluster.apply([session_manifest(f"s{i}") for i in range(count)], namespace=namespace)
    # Kill it as soon as it is halfway: some children exist, not all sessions are done.
    wait_for(
        lambda: len(names(kube_cluster, namespace, "secret", "ec2-terminal.io/session")) >= 1,
        timeout=30,
        interval=0.05,
    )
    first.kill()
    tokens_at_kill = {
        s["metadata"]["name"]: s["data"]["token"]
        for s in kube_cluster.kubectl_json(
            "get", "secret", "--selector=ec2-terminal.io/session", namespace=namespace
        )["items"]
    }
    operator_factory(namespace)
    for i in range(count):
        wait_phase(kube_cluster, namespace, f"s{i}", "Ready", timeout=90)
    expected = [f"s{i}" for i in range(count)]
    assert names(kube_cluster, namespace, "pod", "ec2-terminal.io/session") == expected
    assert names(kube_cluster, namespace, "service", "ec2-terminal.io/session") == expected
    assert names(kube_cluster, namespace, "secret", "ec2-terminal.io/session") == [
        f"{n}-token" for n in expected
    ]
    tokens = {
        s["metadata"]["name"]: s["data"]["token"]
        for s in kube_cluster.kubectl_json(
            "get", "secret", "--selector=ec2-terminal.io/session", namespace=namespace
        )["items"]
    }
    # Nothing created before the kill was lost or replaced.
    for name, token in tokens_at_kill.items():
        assert tokens[name] == token
    for i in range(count):
        ts = get_session(kube_cluster, namespace, f"s{i}")
        assert ts["status"]["observedGeneration"] == ts["metadata"]["generation"]


def test_spec_change_replaces_the_pod(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    ready_session(kube_cluster, namespace, "img")
    patch_spec(kube_cluster, namespace, "img", pod={"image": TEST_IMAGE_PREFIX + "2"})

    def new_image() -> bool:
        pod = kube_cluster.kubectl_json("get", "pod", "img", namespace=namespace)
        return bool(pod["spec"]["containers"][0]["image"] == TEST_IMAGE_PREFIX + "2")

    wait_for(new_image, timeout=60, message="pod replaced with the new image")
    ts = wait_phase(kube_cluster, namespace, "img", "Ready")
    assert ts["status"]["observedGeneration"] == 2


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("session*.yaml")), ids=lambda p: p.name
)
def test_examples_are_accepted(
    kube_cluster: KubeCluster, terminalsession_crd: str, namespace: str, example: Path
) -> None:
    out = kube_cluster.kubectl("apply", "--dry-run=server", "-f", str(example), namespace=namespace)
    assert "created (server dry run)" in out


def test_a_foreign_service_with_the_same_name_is_left_alone(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.apply(key_secret(), namespace=namespace)
    foreign = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "taken"},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]},
    }
    kube_cluster.apply(foreign, namespace=namespace)
    kube_cluster.apply(session_manifest("taken"), namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "taken", "Failed")
    assert condition(ts, "PodReady")["reason"] == "NameConflict"
    svc = kube_cluster.kubectl_json("get", "service", "taken", namespace=namespace)
    assert svc["spec"]["selector"] == {"app": "theirs"}
    assert not svc["metadata"].get("ownerReferences")
    assert not exists(kube_cluster, namespace, "pod", "taken")
    # Deleting the session removes what it owns, never the foreign Service.
    kube_cluster.kubectl(
        "delete", "ts", "taken", "--wait=true", "--timeout=60s", namespace=namespace
    )
    wait_for(
        lambda: not exists(kube_cluster, namespace, "secret", "taken-token"),
        message="the session's own token Secret deleted",
    )
    svc = kube_cluster.kubectl_json("get", "service", "taken", namespace=namespace)
    assert svc["spec"]["selector"] == {"app": "theirs"}
    kube_cluster.kubectl("delete", "service", "taken", namespace=namespace)
    kube_cluster.apply(session_manifest("taken"), namespace=namespace)
    wait_phase(kube_cluster, namespace, "taken", "Ready")


def test_an_evicted_pod_is_replaced(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    ready_session(kube_cluster, namespace, "evict")
    old_uid = kube_cluster.kubectl_json("get", "pod", "evict", namespace=namespace)["metadata"][
        "uid"
    ]
    evicted = {
        "status": {
            "phase": "Failed",
            "reason": "Evicted",
            "message": "The node was low on resource: memory.",
        }
    }
    kube_cluster.kubectl(
        "patch",
        "pod",
        "evict",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(evicted),
        namespace=namespace,
    )

    def replaced() -> bool:
        pod = kube_cluster.kubectl(
            "get", "pod", "evict", "--ignore-not-found", "-o", "json", namespace=namespace
        )
        return bool(pod.strip()) and json.loads(pod)["metadata"]["uid"] != old_uid

    wait_for(replaced, timeout=60, message="evicted pod replaced")
    wait_phase(kube_cluster, namespace, "evict", "Ready")
    wait_events(kube_cluster, namespace, "evict", ("Warning", "PodReplaced"))


def test_the_session_pod_is_admitted_under_restricted_pod_security(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    kube_cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    # The label is enforced: a pod with no securityContext at all is refused.
    with pytest.raises(KubectlError) as info:
        kube_cluster.kubectl(
            "run", "plain", "--image=busybox", "--dry-run=server", namespace=namespace
        )
    assert "violates PodSecurity" in info.value.stderr
    ready_session(kube_cluster, namespace, "psa", exposure={"type": "Ingress"})
    assert exists(kube_cluster, namespace, "pod", "psa")


def test_the_operator_refuses_what_its_policy_does_not_allow(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 9.3: creating a session must not let anyone run any image on any node."""
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(
        [
            session_manifest("image", pod={"image": "attacker.example/shell:latest"}),
            session_manifest(
                "toleration",
                pod={
                    "tolerations": [
                        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
                    ]
                },
            ),
        ],
        namespace=namespace,
    )
    for name, reason in (("image", "ImageNotAllowed"), ("toleration", "TolerationNotAllowed")):
        ts = wait_phase(kube_cluster, namespace, name, "Failed")
        accepted = condition(ts, "Accepted")
        assert (accepted["status"], accepted["reason"]) == ("False", reason), accepted
        assert condition(ts, "Ready")["reason"] == reason
        wait_events(kube_cluster, namespace, name, ("Warning", reason))
        assert not exists(kube_cluster, namespace, "pod", name)
    # An allowed change brings the session up.
    patch_spec(kube_cluster, namespace, "image", pod={"image": TEST_IMAGE_PREFIX + "3"})
    ts = wait_phase(kube_cluster, namespace, "image", "Ready")
    assert condition(ts, "Accepted")["status"] == "True"
    # Refused again: the pod it has goes.
    patch_spec(kube_cluster, namespace, "image", pod={"image": "attacker.example/shell:2"})
    wait_phase(kube_cluster, namespace, "image", "Failed")
    wait_for(lambda: not exists(kube_cluster, namespace, "pod", "image"), message="pod removed")
    wait_events(kube_cluster, namespace, "image", ("Normal", "PodDeleted"))


def test_a_secret_is_mounted_only_if_it_opted_in(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 9.3: a session must not mount any Secret of its namespace by naming it."""
    unlabelled = key_secret("db-password")
    del unlabelled["metadata"]["labels"]
    kube_cluster.apply(unlabelled, namespace=namespace)
    kube_cluster.apply(
        session_manifest("steal", credentialsSecretRef={"name": "db-password"}),
        namespace=namespace,
    )
    ts = wait_phase(kube_cluster, namespace, "steal", "Pending")
    creds = condition(ts, "CredentialsReady")
    assert creds["reason"] == "SecretNotUsable", creds
    assert "ec2-terminal.io/usable-by-sessions=true" in creds["message"]
    wait_events(kube_cluster, namespace, "steal", ("Warning", "SecretNotUsable"))
    assert not exists(kube_cluster, namespace, "pod", "steal")
    # A Secret of the dedicated type needs no label.
    ssh_auth = key_secret("deploy-key")
    del ssh_auth["metadata"]["labels"]
    ssh_auth["type"] = "kubernetes.io/ssh-auth"
    kube_cluster.apply(ssh_auth, namespace=namespace)
    kube_cluster.apply(
        session_manifest("typed", credentialsSecretRef={"name": "deploy-key"}),
        namespace=namespace,
    )
    wait_phase(kube_cluster, namespace, "typed", "Ready")


def _ingresses(cluster: KubeCluster, namespace: str) -> list[str]:
    return names(cluster, namespace, "ingress")


def test_each_session_gets_an_origin_of_its_own(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 9.2: sessions on one origin can script each other; a host each, served at /."""
    ts = ready_session(kube_cluster, namespace, "mine", exposure={"type": "Ingress"})
    host = f"mine-{namespace}.{SESSION_DOMAIN}"
    assert ts["status"]["url"] == f"http://{host}/"
    ingress = kube_cluster.kubectl_json("get", "ingress", "mine", namespace=namespace)
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == host
    assert rule["http"]["paths"][0]["path"] == "/"
    pod = kube_cluster.kubectl_json("get", "pod", "mine", namespace=namespace)
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["EC2_TERMINAL_BASE_PATH"] == "/"
    assert env["EC2_TERMINAL_ALLOWED_ORIGINS"] == f"http://{host}"
    assert env["EC2_TERMINAL_ALLOWED_HOSTS"].split(",")[0] == host


def test_one_host_serves_one_session(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 9.2: a second session on a host another session serves is refused."""
    exposure = {"type": "Ingress", "host": "one.example.com"}
    ready_session(kube_cluster, namespace, "first", exposure=exposure)
    kube_cluster.apply(session_manifest("second", exposure=exposure), namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "second", "Failed")
    accepted = condition(ts, "Accepted")
    assert accepted["reason"] == "HostInUse", accepted
    assert f"{namespace}/first" in accepted["message"]
    wait_events(kube_cluster, namespace, "second", ("Warning", "HostInUse"))
    assert _ingresses(kube_cluster, namespace) == ["first"]
    assert not exists(kube_cluster, namespace, "pod", "second")
    # The host is free once the first session is gone.
    kube_cluster.kubectl(
        "delete", "ts", "first", "--wait=true", "--timeout=60s", namespace=namespace
    )
    wait_phase(kube_cluster, namespace, "second", "Ready")
    assert _ingresses(kube_cluster, namespace) == ["second"]


def test_hosts_outside_the_policy_are_refused(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 9.7: exposure.host and ingressClassName only as the chart's values permit."""
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(
        [
            session_manifest("evil", exposure={"type": "Ingress", "host": "bank.example.org"}),
            session_manifest(
                "squat",
                exposure={"type": "Ingress", "host": f"victim-{namespace}.{SESSION_DOMAIN}"},
            ),
            session_manifest("cls", exposure={"type": "Ingress", "ingressClassName": "admin"}),
        ],
        namespace=namespace,
    )
    for name, reason in (
        ("evil", "HostNotAllowed"),
        ("squat", "HostNotAllowed"),
        ("cls", "IngressClassNotAllowed"),
    ):
        ts = wait_phase(kube_cluster, namespace, name, "Failed")
        assert condition(ts, "Accepted")["reason"] == reason, name
    assert _ingresses(kube_cluster, namespace) == []


def test_a_shared_origin_is_refused_unless_allowed(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    """Issue 9.2: without a session domain, a host-less Ingress would share one origin."""
    no_domain = operator_factory(namespace, env={"EC2_TERMINAL_OPERATOR_SESSION_DOMAIN": ""})
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(session_manifest("a", exposure={"type": "Ingress"}), namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "a", "Failed")
    accepted = condition(ts, "Accepted")
    assert accepted["reason"] == "SharedOriginRefused", accepted
    assert _ingresses(kube_cluster, namespace) == []
    # An administrator who accepts the risk: then no path may nest in another's.
    no_domain.stop()
    operator_factory(
        namespace,
        env={
            "EC2_TERMINAL_OPERATOR_SESSION_DOMAIN": "",
            "EC2_TERMINAL_OPERATOR_ALLOW_SHARED_ORIGIN": "true",
        },
    )
    wait_phase(kube_cluster, namespace, "a", "Ready")
    nested = {"type": "Ingress", "pathPrefix": f"/t/{namespace}/a"}
    kube_cluster.apply(session_manifest("b", exposure=nested), namespace=namespace)
    ts = wait_phase(kube_cluster, namespace, "b", "Failed")
    assert condition(ts, "Accepted")["reason"] == "PathNested"
    assert _ingresses(kube_cluster, namespace) == ["a"]


def _network_policy(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    policy: dict[str, Any] = cluster.kubectl_json("get", "networkpolicy", name, namespace=namespace)
    return policy


def test_each_session_pod_is_fenced_by_its_own_network_policy(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    """Issue 9.4, 9.10: the pod is reached by the ingress controller and health checker only."""
    # And it reaches SSH on the target's port, HTTPS and DNS, and no link-local address.
    first = operator_factory(namespace)
    ts = ready_session(kube_cluster, namespace, "fenced")
    policy = _network_policy(kube_cluster, namespace, "fenced")
    refs = policy["metadata"]["ownerReferences"]
    assert [(r["kind"], r["uid"], r.get("controller")) for r in refs] == [
        ("TerminalSession", ts["metadata"]["uid"], True)
    ]
    expected = resources.build_network_policy(
        parse_session(ts), OperatorConfig.from_env(TEST_POLICY)
    )
    assert policy["spec"] == expected["spec"]
    spec = policy["spec"]
    assert spec["podSelector"] == {"matchLabels": {"ec2-terminal.io/session": "fenced"}}
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    ssh = spec["egress"][0]
    assert ssh["ports"] == [{"protocol": "TCP", "port": 22}]
    assert {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]} in [t["ipBlock"] for t in ssh["to"]]
    # New settings reach existing sessions: egress off, a bastion namespace let in.
    first.stop()
    bastion = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bastion"}}}
    settings = {"extraIngressFrom": [bastion], "egress": {"enabled": False}}
    operator_factory(namespace, env={"EC2_TERMINAL_OPERATOR_NETWORK_POLICY": json.dumps(settings)})

    def updated() -> dict[str, Any]:
        spec = _network_policy(kube_cluster, namespace, "fenced")["spec"]
        return spec if spec["policyTypes"] == ["Ingress"] else {}

    spec = wait_for(updated, timeout=60, message="NetworkPolicy updated")
    assert "egress" not in spec
    assert spec["ingress"][0]["from"][-1] == bastion


def test_a_target_the_egress_policy_blocks_is_refused(
    kube_cluster: KubeCluster, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 9.10: target.host must not reach the instance metadata service (or other ports)."""
    kube_cluster.apply(key_secret(), namespace=namespace)
    kube_cluster.apply(
        [
            session_manifest("imds", target={"host": "169.254.169.254", "port": 22}),
            session_manifest("kubelet", target={"host": "10.0.0.5", "port": 10250}),
        ],
        namespace=namespace,
    )
    for name in ("imds", "kubelet"):
        ts = wait_phase(kube_cluster, namespace, name, "Failed")
        accepted = condition(ts, "Accepted")
        assert accepted["reason"] == "TargetNotAllowed", accepted
        assert not exists(kube_cluster, namespace, "pod", name)


def test_token_rotation_writes_a_fresh_token_and_keeps_the_pod(
    kube_cluster: KubeCluster, namespace: str, operator_factory: OperatorFactory
) -> None:
    """Issue 9.6: a leaked token can be revoked without recreating the session."""
    first = operator_factory(namespace)
    ready_session(kube_cluster, namespace, "rot")
    before = kube_cluster.kubectl_json("get", "secret", "rot-token", namespace=namespace)
    pod_uid = kube_cluster.kubectl_json("get", "pod", "rot", namespace=namespace)["metadata"]["uid"]
    patch_spec(kube_cluster, namespace, "rot", tokenRotation="2026-01-01T13:00:00Z")

    def rotated() -> dict[str, Any]:
        ts = get_session(kube_cluster, namespace, "rot")
        return ts if ts["status"].get("tokenRotation") == "2026-01-01T13:00:00Z" else {}

    wait_for(rotated, message="status.tokenRotation")
    after = kube_cluster.kubectl_json("get", "secret", "rot-token", namespace=namespace)
    assert after["data"]["token"] != before["data"]["token"]
    assert len(base64.b64decode(after["data"]["token"])) >= 32
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    wait_events(kube_cluster, namespace, "rot", ("Normal", "TokenRotated"))
    pod = kube_cluster.kubectl_json("get", "pod", "rot", namespace=namespace)
    assert pod["metadata"]["uid"] == pod_uid
    assert wait_phase(kube_cluster, namespace, "rot", "Ready")
    # The value is opaque, but not free text.
    with pytest.raises(KubectlError, match="tokenRotation must be letters, digits"):
        patch_spec(kube_cluster, namespace, "rot", tokenRotation="now; rm -rf")
    # Each value is handled once, also by an operator that restarted.
    first.stop()
    operator_factory(namespace)
    passed_since(kube_cluster, namespace, "rot")
    again = kube_cluster.kubectl_json("get", "secret", "rot-token", namespace=namespace)
    assert again["data"]["token"] == after["data"]["token"]
    patch_spec(kube_cluster, namespace, "rot", tokenRotation="2")

    def rotated_again() -> dict[str, Any]:
        secret = kube_cluster.kubectl_json("get", "secret", "rot-token", namespace=namespace)
        return secret if secret["data"]["token"] != after["data"]["token"] else {}

    third = wait_for(rotated_again, message="a new value rotates again")
    assert third["data"]["token"] != before["data"]["token"]
