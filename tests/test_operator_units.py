"""Fast unit tests of the operator's pure parts: spec view, builders, lifetime, status."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime
import subprocess
import sys
from typing import Any, cast

import kopf
import pytest
from ec2_terminal_operator import connections, footprint, lifetime, resources, status
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.observed import (
    Activity,
    Check,
    Observed,
    PodView,
    activity_view,
    pod_view,
)
from ec2_terminal_operator.spec import SpecError, parse_session

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
CONFIG = OperatorConfig(session_image="registry.local/ec2-terminal:test")
FINGERPRINT = "SHA256:" + "A" * 43


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": {"host": "10.0.0.5", "port": 2222, "user": "ec2-user", "accessMethod": "SSHKey"},
        "credentialsSecretRef": {"name": "key", "key": "ssh-privatekey"},
        "hostKey": {"policy": "Fingerprint", "fingerprint": FINGERPRINT},
    }
    base.update(spec)
    return {
        "apiVersion": "ec2-terminal.io/v1alpha1",
        "kind": "TerminalSession",
        "metadata": {"name": "demo", "namespace": "team-a", "uid": "u-1", "generation": 2},
        "spec": base,
    }


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {
        e["name"]: e.get("value", e.get("valueFrom")) for e in pod["spec"]["containers"][0]["env"]
    }


def test_spec_defaults_and_base_path() -> None:
    s = parse_session(body())
    assert s.lifetime.max_duration == 28800
    assert s.lifetime.idle_timeout == 1800
    assert s.exposure.path_prefix == "/t"
    assert s.layout_path == "/t/team-a/demo/"
    assert s.target.describe() == "ec2-user@10.0.0.5:2222"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"host": "h", "instanceId": "i-0123456789abcdef0"}, "exactly one"),
        ({}, "exactly one"),
    ],
)
def test_spec_refuses_bad_targets(target: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_session(body(target=target))


def test_spec_needs_credentials_for_ssh_key() -> None:
    raw = body()
    del raw["spec"]["credentialsSecretRef"]
    with pytest.raises(SpecError, match="credentialsSecretRef"):
        parse_session(raw)


def test_pod_is_restricted_and_renders_the_server_contract() -> None:
    pod = resources.build_pod(parse_session(body()), CONFIG)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["ec2-terminal", "serve"]
    assert container["image"] == "registry.local/ec2-terminal:test"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"] == "256Mi"
    assert spec["serviceAccountName"] == "demo-session"
    env = env_of(pod)
    assert env["EC2_TERMINAL_HOST"] == "10.0.0.5"
    assert env["EC2_TERMINAL_PORT"] == "2222"
    assert env["EC2_TERMINAL_ACCESS_METHOD"] == "ssh-key"
    assert env["EC2_TERMINAL_KEY_FILE"] == "/var/run/ec2-terminal/ssh/ssh-privatekey"
    assert env["EC2_TERMINAL_HOST_KEY_POLICY"] == "fingerprint"
    assert env["EC2_TERMINAL_HOST_KEY_FINGERPRINT"] == FINGERPRINT
    assert env["EC2_TERMINAL_BASE_PATH"] == "/t/team-a/demo/"
    assert env["EC2_TERMINAL_TOKEN_FILE"] == "/var/run/ec2-terminal/token/token"
    assert env["EC2_TERMINAL_LISTEN_HOST"] == "0.0.0.0"
    assert env["EC2_TERMINAL_LISTEN_PORT"] == "8000"
    assert env["EC2_TERMINAL_IDLE_TIMEOUT"] == "1800"
    assert env["EC2_TERMINAL_MAX_DURATION"] == "28800"
    assert env["EC2_TERMINAL_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "EC2_TERMINAL_INSTANCE_ID" not in env
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/run/ec2-terminal/ssh"]["readOnly"] is True
    assert "/tmp" in mounts
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["ssh-key"]["secret"]["secretName"] == "key"
    assert volumes["token"]["secret"]["secretName"] == "demo-token"


def test_pod_for_instance_connect_with_known_hosts() -> None:
    raw = body(
        target={
            "instanceId": "i-0123456789abcdef0",
            "region": "eu-west-1",
            "accessMethod": "EC2InstanceConnect",
        },
        hostKey={"policy": "KnownHostsSecret", "knownHostsSecretRef": {"name": "kh"}},
        exposure={"type": "Ingress", "host": "term.example.com", "tls": {"secretName": "tls"}},
    )
    del raw["spec"]["credentialsSecretRef"]
    pod = resources.build_pod(parse_session(raw), CONFIG)
    env = env_of(pod)
    assert env["EC2_TERMINAL_INSTANCE_ID"] == "i-0123456789abcdef0"
    assert env["EC2_TERMINAL_REGION"] == "eu-west-1"
    assert env["EC2_TERMINAL_ACCESS_METHOD"] == "instance-connect"
    assert env["EC2_TERMINAL_HOST_KEY_POLICY"] == "known-hosts"
    assert env["EC2_TERMINAL_KNOWN_HOSTS"] == "/var/run/ec2-terminal/known-hosts/known_hosts"
    assert env["EC2_TERMINAL_ALLOWED_ORIGINS"] == "https://term.example.com"
    assert "EC2_TERMINAL_KEY_FILE" not in env
    assert {v["name"] for v in pod["spec"]["volumes"]} == {
        "token",
        "known-hosts",
        "tmp",
        "recordings",
    }


def test_config_hash_follows_the_spec() -> None:
    a = resources.build_pod(parse_session(body()), CONFIG)
    b = resources.build_pod(parse_session(body(pod={"image": "other:1"})), CONFIG)
    again = resources.build_pod(parse_session(body()), CONFIG)
    key = resources.ANNOTATION_CONFIG_HASH
    assert a["metadata"]["annotations"][key] == again["metadata"]["annotations"][key]
    assert a["metadata"]["annotations"][key] != b["metadata"]["annotations"][key]


def test_config_hash_ignores_operator_settings() -> None:
    a = resources.build_pod(parse_session(body()), CONFIG)
    b = resources.build_pod(parse_session(body()), OperatorConfig(session_image="new:2"))
    config, pod_hash = resources.ANNOTATION_CONFIG_HASH, resources.ANNOTATION_POD_HASH
    assert a["metadata"]["annotations"][config] == b["metadata"]["annotations"][config]
    assert a["metadata"]["annotations"][pod_hash] != b["metadata"]["annotations"][pod_hash]
    # Fields the pod does not use do not replace it either.
    c = resources.build_pod(parse_session(body(healthCheck={"enabled": False})), CONFIG)
    assert a["metadata"]["annotations"] == c["metadata"]["annotations"]


def test_forwarded_headers_are_trusted_only_behind_an_ingress() -> None:
    ingress = body(
        exposure={"type": "Ingress", "host": "t.example.com", "tls": {"secretName": "t"}}
    )
    env = env_of(resources.build_pod(parse_session(ingress), CONFIG))
    assert env["EC2_TERMINAL_FORWARDED_ALLOW_IPS"] == "*"
    plain = env_of(resources.build_pod(parse_session(body()), CONFIG))
    assert "EC2_TERMINAL_FORWARDED_ALLOW_IPS" not in plain


def test_ingress_has_websocket_timeouts_and_the_session_path() -> None:
    s = parse_session(
        body(exposure={"type": "Ingress", "ingressClassName": "nginx", "host": "t.example.com"})
    )
    ing = resources.build_ingress(s, CONFIG)
    ann = ing["metadata"]["annotations"]
    assert ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert ann["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert ing["spec"]["ingressClassName"] == "nginx"
    rule = ing["spec"]["rules"][0]
    assert rule["host"] == "t.example.com"
    path = rule["http"]["paths"][0]
    assert path["path"] == "/t/team-a/demo"
    assert path["backend"]["service"]["name"] == "demo"
    assert resources.session_url(s, CONFIG) == "http://t.example.com/t/team-a/demo/"


def test_cluster_ip_url_and_service() -> None:
    s = parse_session(body())
    assert resources.session_url(s, CONFIG) == "http://demo.team-a.svc/t/team-a/demo/"
    svc = resources.build_service(s, CONFIG)
    assert svc["spec"]["selector"] == {resources.LABEL_SESSION: "demo"}


def test_role_allows_only_its_own_lease() -> None:
    session = parse_session(body())
    role = resources.build_role(session)
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["demo-activity"],
            "verbs": ["get", "update", "patch"],
        }
    ]
    lease = resources.build_lease(session)
    assert lease["metadata"]["name"] == "demo-activity"
    assert lease["metadata"]["labels"][resources.LABEL_SESSION] == "demo"
    env = env_of(resources.build_pod(session, CONFIG))
    assert env["EC2_TERMINAL_ACTIVITY_LEASE"] == "demo-activity"
    assert env["EC2_TERMINAL_POD_UID"] == {"fieldRef": {"fieldPath": "metadata.uid"}}


def test_token_secret_holds_the_token() -> None:
    secret = resources.build_token_secret(parse_session(body()), "tok")
    assert base64.b64decode(secret["data"]["token"]) == b"tok"


def test_pod_view_reads_readiness() -> None:
    view = pod_view(
        {
            "metadata": {"name": "demo", "uid": "u", "creationTimestamp": "2026-01-01T12:00:00Z"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }
    )
    assert view.ready
    assert view.uid == "u"
    assert view.created == T0


def test_activity_view_reads_the_lease_of_the_current_pod_only() -> None:
    lease = {
        "metadata": {
            "annotations": {
                resources.ANNOTATION_LAST_ACTIVITY: "2026-01-01T12:05:00Z",
                resources.ANNOTATION_ACTIVE_CONNECTIONS: "2",
            }
        },
        "spec": {"holderIdentity": "pod-uid-1"},
    }
    view = activity_view(lease)
    assert view.active_connections == 2
    assert view.last_activity == T0 + datetime.timedelta(minutes=5)
    assert view.of(pod(uid="pod-uid-1")) is view
    assert view.of(pod(uid="pod-uid-2")) is None
    assert view.of(pod(uid="pod-uid-1", deleting=True)) is None
    assert view.of(None) is None
    bad = activity_view(
        {"metadata": {"annotations": {resources.ANNOTATION_ACTIVE_CONNECTIONS: "x"}}}
    )
    assert bad.active_connections is None


def test_pod_view_explains_an_unschedulable_pod() -> None:
    view = pod_view(
        {
            "metadata": {"name": "demo"},
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/2 nodes are available",
                    }
                ],
            },
        }
    )
    assert (view.waiting_reason, view.waiting_message) == (
        "Unschedulable",
        "0/2 nodes are available",
    )


def pod(ready: bool = True, **kw: Any) -> PodView:
    fields: dict[str, Any] = {
        "name": "demo",
        "phase": "Running" if ready else "Pending",
        "ready": ready,
        "deleting": False,
        "created": T0,
        "config_hash": "x",
        "waiting_reason": None,
        "waiting_message": None,
        "uid": "pod-uid",
    }
    fields.update(kw)
    return PodView(**fields)


def observe(pod_: PodView | None, creds: bool = True, hc: dict[str, Any] | None = None) -> Observed:
    return Observed(
        deleting=False,
        credentials=Check(True, "SecretFound", "ok")
        if creds
        else Check(False, "SecretNotFound", "credentials Secret 'key' not found"),
        pod=pod_,
        route=Check(True, "ServiceReady", "ok"),
        health_check=hc or {},
    )


def run(
    raw: dict[str, Any],
    obs: Observed,
    prior: dict[str, Any],
    now: datetime.datetime,
    activity: Activity | None = None,
) -> status.Verdict:
    s = parse_session(raw)
    life = lifetime.evaluate(s, prior, obs.pod, now, activity)
    return status.compute(s, obs, life, prior, CONFIG, now)


def conds(verdict: status.Verdict) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in verdict.status["conditions"]}


def test_ready_session_status() -> None:
    v = run(body(), observe(pod()), {}, T0)
    c = conds(v)
    assert v.phase is status.Phase.READY
    assert c["Ready"]["status"] == "True"
    assert c["Expired"]["status"] == "False"
    assert c["TargetReachable"]["status"] == "Unknown"
    assert all(x["observedGeneration"] == 2 for x in c.values())
    assert v.status["observedGeneration"] == 2
    assert v.status["url"] == "http://demo.team-a.svc/t/team-a/demo/"
    assert v.status["tokenSecretRef"] == {"name": "demo-token", "key": "token"}
    assert v.status["readyTime"] == "2026-01-01T12:00:00Z"
    assert v.status["expiresAt"] == "2026-01-01T20:00:00Z"


def test_missing_secret_is_pending_with_a_warning_then_recovers() -> None:
    v1 = run(body(), observe(None, creds=False), {}, T0)
    assert v1.phase is status.Phase.PENDING
    assert conds(v1)["CredentialsReady"]["reason"] == "SecretNotFound"
    assert ("Warning", "SecretNotFound") in {(e.type, e.reason) for e in v1.events}
    later = T0 + datetime.timedelta(seconds=30)
    v2 = run(body(), observe(pod()), v1.status, later)
    assert v2.phase is status.Phase.READY
    c = conds(v2)
    assert c["CredentialsReady"]["lastTransitionTime"] == "2026-01-01T12:00:30Z"
    assert {e.reason for e in v2.events} >= {"SecretFound", "SessionReady"}


def test_lasttransitiontime_is_kept_while_status_holds() -> None:
    v1 = run(body(), observe(pod()), {}, T0)
    v2 = run(body(), observe(pod()), v1.status, T0 + datetime.timedelta(seconds=60))
    assert conds(v2)["Ready"]["lastTransitionTime"] == "2026-01-01T12:00:00Z"
    assert v2.events == ()
    assert status.status_changes(v1.status, v2.status) == {}


def test_startup_timeout_fails_and_recovers() -> None:
    raw = body(lifetime={"startupTimeoutSeconds": 60})
    starting = pod(ready=False, waiting_reason="ImagePullBackOff", waiting_message="no such image")
    v1 = run(raw, observe(starting), {}, T0 + datetime.timedelta(seconds=61))
    assert v1.phase is status.Phase.FAILED
    assert conds(v1)["PodReady"]["reason"] == "StartupTimeout"
    assert "ImagePullBackOff" in conds(v1)["PodReady"]["message"]
    v2 = run(raw, observe(pod()), v1.status, T0 + datetime.timedelta(seconds=90))
    assert v2.phase is status.Phase.READY


def test_a_crash_loop_after_ready_reports_its_own_reason() -> None:
    raw = body(lifetime={"startupTimeoutSeconds": 60})
    v1 = run(raw, observe(pod()), {}, T0)
    crashing = pod(
        ready=False, phase="Running", waiting_reason="CrashLoopBackOff", waiting_message="back-off"
    )
    v2 = run(raw, observe(crashing), v1.status, T0 + datetime.timedelta(seconds=600))
    assert conds(v2)["PodReady"]["reason"] == "CrashLoopBackOff"
    assert conds(v2)["PodReady"]["message"] == "back-off"
    assert v2.phase is status.Phase.FAILED


def test_max_duration_expires() -> None:
    raw = body(lifetime={"maxDurationSeconds": 60})
    v1 = run(raw, observe(pod()), {}, T0)
    v2 = run(raw, observe(pod()), v1.status, T0 + datetime.timedelta(seconds=60))
    assert v2.phase is status.Phase.EXPIRED
    assert conds(v2)["Expired"]["reason"] == "MaxDurationExceeded"
    assert conds(v2)["Ready"]["status"] == "False"
    # Expiry is final even if the clock were to go back or the pod reappear.
    v3 = run(raw, observe(pod()), v2.status, T0 + datetime.timedelta(seconds=1))
    assert v3.phase is status.Phase.EXPIRED


def test_idle_timeout_counts_from_last_activity_and_not_while_connected() -> None:
    raw = body(lifetime={"idleTimeoutSeconds": 30})
    v1 = run(raw, observe(pod()), {}, T0)
    active = Activity("pod-uid", 1, T0 + datetime.timedelta(seconds=20))
    v2 = run(raw, observe(pod()), v1.status, T0 + datetime.timedelta(seconds=100), active)
    assert v2.phase is status.Phase.READY
    assert v2.status["activeConnections"] == 1
    assert v2.status["lastActivityTime"] == "2026-01-01T12:00:20Z"
    quiet = Activity("pod-uid", 0, T0 + datetime.timedelta(seconds=20))
    v3 = run(raw, observe(pod()), v2.status, T0 + datetime.timedelta(seconds=49), quiet)
    assert v3.phase is status.Phase.READY
    v4 = run(raw, observe(pod()), v3.status, T0 + datetime.timedelta(seconds=50), quiet)
    assert v4.phase is status.Phase.EXPIRED
    assert conds(v4)["Expired"]["reason"] == "IdleTimeout"
    assert v4.status["activeConnections"] == 0


def test_suspend_is_its_own_phase_without_a_pod() -> None:
    v = run(body(suspend=True), observe(None), {}, T0)
    assert v.phase is status.Phase.SUSPENDED
    assert conds(v)["PodReady"]["reason"] == "Suspended"
    assert v.status["podName"] is None


def test_a_deleted_session_is_terminating_in_its_phase_and_conditions() -> None:
    ready = run(body(), observe(pod()), {}, T0)
    deleting = dataclasses.replace(observe(pod()), deleting=True)
    v = run(body(), deleting, ready.status, T0 + datetime.timedelta(seconds=1))
    assert v.phase is status.Phase.TERMINATING
    c = conds(v)
    assert (c["PodReady"]["status"], c["PodReady"]["reason"]) == ("False", "Terminating")
    assert (c["Ready"]["status"], c["Ready"]["reason"]) == ("False", "Terminating")
    # The transitions are expected ones: Normal Events, no Warning.
    assert {(e.type, e.reason) for e in v.events} == {("Normal", "Terminating")}


def test_ready_held_back_by_a_condition_posts_its_event_once() -> None:
    # Ready copies the reason and message of PodReady here: one Event, not two alike.
    ready = run(body(), observe(pod()), {}, T0)
    starting = run(body(), observe(pod(ready=False)), ready.status, T0)
    assert conds(starting)["Ready"]["reason"] == conds(starting)["PodReady"]["reason"]
    reasons = [e.reason for e in starting.events]
    assert len(reasons) == len(set(reasons)) > 0
    deleting = dataclasses.replace(observe(pod()), deleting=True)
    v = run(body(), deleting, ready.status, T0 + datetime.timedelta(seconds=1))
    assert [(e.type, e.reason) for e in v.events] == [("Normal", "Terminating")]


def test_pod_creating_posts_no_event() -> None:
    # Every new session's first pass says PodCreating (right after the PodCreated Event):
    # an Event for it was one more POST per session that told nothing (issue 15).
    first = run(body(), observe(None), {}, T0)
    assert conds(first)["PodReady"]["reason"] == "PodCreating"
    assert conds(first)["Ready"]["reason"] == "PodCreating"
    assert first.events == ()
    # Nor when a Ready session's pod is gone and made again; the pod starting still gets one.
    ready = run(body(), observe(pod()), first.status, T0 + datetime.timedelta(seconds=1))
    assert {e.reason for e in ready.events} >= {"PodReady", "SessionReady"}
    gone = run(body(), observe(None), ready.status, T0 + datetime.timedelta(seconds=2))
    assert conds(gone)["Ready"]["reason"] == "PodCreating"
    assert gone.events == ()
    starting = run(
        body(), observe(pod(ready=False)), gone.status, T0 + datetime.timedelta(seconds=3)
    )
    assert [(e.type, e.reason) for e in starting.events] == [("Normal", "PodStarting")]


def test_an_evicted_pod_reports_its_own_reason_while_it_is_replaced() -> None:
    ready = run(body(), observe(pod()), {}, T0)
    evicted = pod(ready=False, phase="Failed", reason="Evicted", message="low on memory")
    v = run(body(), observe(evicted), ready.status, T0 + datetime.timedelta(seconds=1))
    pod_ready = conds(v)["PodReady"]
    assert pod_ready["reason"] == "Evicted"
    assert pod_ready["message"] == "pod demo failed (Evicted: low on memory); replacing it"
    assert v.phase is status.Phase.PROVISIONING
    assert ("Warning", "Evicted") in {(e.type, e.reason) for e in v.events}


def test_idle_time_does_not_accrue_while_suspended() -> None:
    raw = body(lifetime={"idleTimeoutSeconds": 30})
    v1 = run(raw, observe(pod()), {}, T0)
    suspended = body(suspend=True, lifetime={"idleTimeoutSeconds": 30})
    v2 = run(suspended, observe(None), v1.status, T0 + datetime.timedelta(seconds=5))
    assert v2.phase is status.Phase.SUSPENDED
    assert v2.status["readyTime"] is None
    # Resumed long after the idle timeout: a new pod starts, then is ready.
    resumed = T0 + datetime.timedelta(seconds=600)
    new_pod = pod(created=resumed)
    v3 = run(raw, observe(pod(ready=False, created=resumed)), v2.status, resumed)
    assert v3.phase is status.Phase.PROVISIONING
    v4 = run(raw, observe(new_pod), v3.status, resumed + datetime.timedelta(seconds=5))
    assert v4.phase is status.Phase.READY
    assert v4.status["readyTime"] == "2026-01-01T12:10:05Z"
    v5 = run(raw, observe(new_pod), v4.status, resumed + datetime.timedelta(seconds=34))
    assert v5.phase is status.Phase.READY
    v6 = run(raw, observe(new_pod), v5.status, resumed + datetime.timedelta(seconds=35))
    assert conds(v6)["Expired"]["reason"] == "IdleTimeout"


@pytest.mark.parametrize(
    ("hc", "expected"),
    [
        ({"result": "ok", "time": "2026-01-01T12:00:00Z", "latencyMs": 12}, "True"),
        ({"result": "error", "message": "connection refused"}, "False"),
        ({}, "Unknown"),
    ],
)
def test_health_check_becomes_target_reachable(hc: dict[str, Any], expected: str) -> None:
    v = run(body(), observe(pod(), hc=hc), {}, T0)
    assert conds(v)["TargetReachable"]["status"] == expected
    # The worker's verdict is informational: the session stays Ready.
    assert v.phase is status.Phase.READY


def test_status_changes_deletes_cleared_keys() -> None:
    assert status.status_changes({"podName": "a", "x": 1}, {"podName": None, "x": 1}) == {
        "podName": None
    }


def test_operator_config_from_env() -> None:
    cfg = OperatorConfig.from_env({"EC2_TERMINAL_OPERATOR_RESYNC_SECONDS": "1.5"})
    assert cfg.resync_seconds == 1.5
    with pytest.raises(ValueError, match="RESYNC_SECONDS"):
        OperatorConfig.from_env({"EC2_TERMINAL_OPERATOR_RESYNC_SECONDS": "soon"})


def test_kopfs_session_to_the_api_server_has_a_bounded_pool() -> None:
    async def made() -> tuple[int, str, str | None]:
        info = kopf.ConnectionInfo(server="https://127.0.0.1:6443", token="t", scheme="Bearer")
        context = connections.bounded_session(info)
        try:
            session = context.aiohttp_session
            assert session.connector is not None
            return session.connector.limit, context.server, session.headers.get("Authorization")
        finally:
            await context.aiohttp_session.close()

    limit, server, auth = asyncio.run(made())
    assert 0 < limit <= connections.MAX_CONNECTIONS
    assert server == "https://127.0.0.1:6443"
    assert auth == "Bearer t"


def test_kopfs_live_body_of_a_session_keeps_no_managed_fields() -> None:
    # Through kopf's own event processing: the daemon's live body (kopf's copy of each
    # session, the bulk of its memory per session) is what the event handler slims.
    from kopf._core.actions import lifecycles
    from kopf._core.engines.indexing import OperatorIndexers
    from kopf._core.reactor import inventory, processing

    registry = kopf.OperatorRegistry()

    @kopf.on.event("ec2-terminal.io", "v1", "terminalsessions", registry=registry)
    async def slim(body: kopf.Body, **_: Any) -> None:
        footprint.slim_body(body)

    resource = kopf.Resource("ec2-terminal.io", "v1", "terminalsessions", namespaced=True)

    def raw(generation: int) -> Any:  # kopf's RawBody
        meta = {"name": "s", "namespace": "ns", "uid": "u1", "generation": generation}
        meta["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
        return {"apiVersion": "ec2-terminal.io/v1", "kind": "TerminalSession", "metadata": meta}

    async def process() -> Any:
        memories = inventory.ResourceMemories()
        memory = await memories.recall(raw(1))
        memory.daemons_memory.live_fresh_body = kopf.Body(raw(1))  # as a running daemon has
        await processing.process_resource_event(
            lifecycle=lifecycles.all_at_once,
            indexers=OperatorIndexers(),
            registry=registry,
            settings=kopf.OperatorSettings(),
            memories=memories,
            memobase=cast(Any, kopf.Memo()),
            resource=resource,
            raw_event={"type": "MODIFIED", "object": raw(2)},
            event_queue=asyncio.Queue(),
        )
        return memory.daemons_memory.live_fresh_body

    live = asyncio.run(process())
    assert live.metadata["generation"] == 2  # the new body, as the daemon sees it
    assert "managedFields" not in live.metadata


def test_slim_body_leaves_what_the_passes_read() -> None:
    body: Any = {
        "metadata": {"name": "s", "labels": {"a": "b"}, "managedFields": [{"manager": "x"}]},
        "spec": {"target": {}},
    }
    footprint.slim_body(kopf.Body(body))
    assert body == {"metadata": {"name": "s", "labels": {"a": "b"}}, "spec": {"target": {}}}
    footprint.slim_body(kopf.Body({}))  # no metadata: nothing to do, no error


def test_malloc_arenas_are_capped_before_threads_allocate() -> None:
    # glibc's malloc_stats() prints one "Arena N:" block per arena to stderr.
    script = """
import ctypes, sys, threading
from ec2_terminal_operator import footprint
if sys.argv[1] == "capped":
    assert footprint.limit_malloc_arenas()
barrier = threading.Barrier(8)
def work():
    keep = [bytearray(4096) for _ in range(200)]
    barrier.wait()  # all 8 threads allocate at the same time
    del keep
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
ctypes.CDLL(None).malloc_stats()
"""

    def arenas(mode: str) -> int:
        run = subprocess.run(
            [sys.executable, "-c", script, mode], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        return run.stderr.count("Arena ")

    assert arenas("default") > footprint.ARENA_MAX  # the cap below is the mallopt's doing
    assert arenas("capped") == footprint.ARENA_MAX
