"""reconcile.py against an in-memory API (beside, not instead of, the real-cluster tests)."""

from __future__ import annotations

import base64
import datetime
import json
import types
from collections.abc import Callable
from typing import Any

from ec2_terminal_operator import children, kube, reconcile
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.observed import Activity, PodView, activity_view, pod_view
from ec2_terminal_operator.origin import Claim
from ec2_terminal_operator.policy import IngressPolicy
from ec2_terminal_operator.spec import parse_session
from kubernetes.client.exceptions import ApiException

from tests.fixtures_operator import condition

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
INGRESS_POLICY = IngressPolicy(
    session_domain="term.example.com",
    allowed_hosts=("*.example.com",),
    allowed_class_names=("nginx",),
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeApi:
    """Stores objects by (kind, namespace, name); answers 409/404 like the API server."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def _creator(self, kind: str) -> Callable[..., Any]:
        def create(namespace: str, body: dict[str, Any], **_: Any) -> None:
            self.calls.append(f"create {kind}")
            key = (kind, namespace, body["metadata"]["name"])
            if key in self.objects:
                raise ApiException(status=409)
            body.setdefault("metadata", {}).setdefault("uid", f"uid-{kind}-{len(self.calls)}")
            self.objects[key] = body

        return create

    def _patcher(self, kind: str) -> Callable[..., Any]:
        def patch(name: str, namespace: str, body: dict[str, Any], **_: Any) -> None:
            self.calls.append(f"patch {kind}")
            key = (kind, namespace, name)
            self.objects[key] = merge_patch(self.objects[key], body)

        return patch

    def _deleter(self, kind: str) -> Callable[..., Any]:
        def delete(name: str, namespace: str, body: Any = None, **_: Any) -> None:
            self.calls.append(f"delete {kind}")
            obj = self.objects.get((kind, namespace, name))
            if obj is None:
                raise ApiException(status=404)
            wanted = ((body or {}).get("preconditions") or {}).get("uid")
            if wanted is not None and wanted != obj.get("metadata", {}).get("uid"):
                raise ApiException(status=409)
            del self.objects[(kind, namespace, name)]

        return delete

    def __getattr__(self, attr: str) -> Callable[..., Any]:
        verb, _, rest = attr.partition("_namespaced_")
        kind = rest
        if verb == "create":
            return self._creator(kind)
        if verb == "patch":
            return self._patcher(kind)
        if verb == "delete":
            return self._deleter(kind)
        if verb == "read":

            def read(name: str, namespace: str, **_: Any) -> Any:
                self.calls.append(f"read {kind}")
                obj = self.objects.get((kind, namespace, name))
                if obj is None:
                    raise ApiException(status=404)
                return types.SimpleNamespace(data=json.dumps(obj).encode())

            return read
        raise AttributeError(attr)


def owner(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": {"host": "10.0.0.5"},
        "credentialsSecretRef": {"name": "ssh-key"},
        "hostKey": {"policy": "Fingerprint", "fingerprint": "SHA256:" + "A" * 43},
    }
    base.update(spec)
    return {
        "apiVersion": "ec2-terminal.io/v1alpha1",
        "kind": "TerminalSession",
        "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1", "generation": 1},
        "spec": base,
    }


class World:
    """A fake API plus the operator-side state a pass carries between runs."""

    def __init__(self) -> None:
        self.api = FakeApi()
        self.clients = kube.Clients(
            core=self.api,  # type: ignore[arg-type]
            networking=self.api,  # type: ignore[arg-type]
            rbac=self.api,  # type: ignore[arg-type]
            custom=self.api,  # type: ignore[arg-type]
            coordination=self.api,  # type: ignore[arg-type]
        )
        self.state = reconcile.SessionState()
        self.config = OperatorConfig(ingress=INGRESS_POLICY)
        self.events: list[tuple[str, str]] = []
        # Every session's claim on an origin, as the operator's index has them.
        self.origins: dict[str, list[Claim]] = {}
        # The pod's status as the kubelet would report it (default: running and ready).
        self.pod_status: dict[str, Any] = {"conditions": [{"type": "Ready", "status": "True"}]}

    def add_key_secret(self) -> None:
        data = {"ssh-privatekey": base64.b64encode(b"k").decode()}
        labels = {"ec2-terminal.io/usable-by-sessions": "true"}
        self.api.objects[("secret", "ns", "ssh-key")] = {
            "metadata": {"labels": labels},
            "data": data,
        }

    def pods(self) -> list[PodView]:
        pod = self.api.objects.get(("pod", "ns", "demo"))
        if pod is None:
            return []
        body = {**pod, "status": self.pod_status}
        return [pod_view(body)]

    def leases(self) -> list[Activity]:
        lease = self.api.objects.get(("lease", "ns", "demo-activity"))
        return [] if lease is None else [activity_view(lease)]

    def report(self, connections: int) -> None:
        """What the current pod's server writes into the session's Lease."""
        pod = self.api.objects[("pod", "ns", "demo")]
        lease = self.api.objects[("lease", "ns", "demo-activity")]
        lease["spec"] = {"holderIdentity": pod["metadata"]["uid"]}
        lease["metadata"]["annotations"] = {"ec2-terminal.io/active-connections": str(connections)}

    def run(self, body: dict[str, Any], now: datetime.datetime = T0) -> dict[str, Any]:
        services = [1] if ("service", "ns", "demo") in self.api.objects else []
        ingresses = [1] if ("ingress", "ns", "demo") in self.api.objects else []
        changes = reconcile.reconcile(
            reconcile.Pass(
                clients=self.clients,
                config=self.config,
                body=body,
                session=parse_session(body),
                pods=self.pods(),
                services=services,
                ingresses=ingresses,
                leases=self.leases(),
                origins=self.origins,
                state=self.state,
                clock=lambda: now,
                emit=lambda _b, t, reason, _m: self.events.append((t, reason)),
            )
        )
        body["status"] = merge_patch(body.get("status") or {}, changes)
        return changes


def test_first_pass_creates_everything_once_with_owner_references() -> None:
    world = World()
    world.add_key_secret()
    body = owner()
    world.run(body)
    kinds = sorted(k for k, _, _ in world.api.objects)
    assert kinds == sorted(
        [
            "network_policy",
            "secret",
            "secret",
            "lease",
            "service_account",
            "role",
            "role_binding",
            "service",
            "pod",
        ]
    )
    pod = world.api.objects[("pod", "ns", "demo")]
    assert pod["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert pod["metadata"]["ownerReferences"][0]["controller"] is True
    assert body["status"]["phase"] == "Provisioning"
    # Second pass: the pod is ready; nothing is created again.
    world.api.calls.clear()
    world.run(body, T0 + datetime.timedelta(seconds=1))
    assert not [c for c in world.api.calls if c.startswith("create")]
    assert body["status"]["phase"] == "Ready"


def test_restart_keeps_the_token() -> None:
    world = World()
    world.add_key_secret()
    body = owner()
    world.run(body)
    token = world.api.objects[("secret", "ns", "demo-token")]["data"]
    world.state = reconcile.SessionState()  # a restarted operator remembers nothing
    world.run(body)
    assert world.api.objects[("secret", "ns", "demo-token")]["data"] == token
    assert ("Normal", "SecretCreated") in world.events


def test_no_pod_without_credentials() -> None:
    world = World()
    body = owner()
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    assert body["status"]["phase"] == "Pending"
    assert ("Warning", "SecretNotFound") in world.events
    world.add_key_secret()
    world.run(body)
    assert ("pod", "ns", "demo") in world.api.objects


def test_suspend_deletes_the_pod_and_a_spec_change_replaces_it() -> None:
    world = World()
    world.add_key_secret()
    body = owner()
    world.run(body)
    body["spec"]["suspend"] = True
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    assert body["status"]["phase"] == "Suspended"
    assert ("service", "ns", "demo") in world.api.objects
    body["spec"]["suspend"] = False
    world.run(body)
    assert ("pod", "ns", "demo") in world.api.objects
    body["spec"]["lifetime"] = {"idleTimeoutSeconds": 60}
    body["metadata"]["generation"] = 2
    world.run(body)
    assert ("Normal", "PodReplaced") in world.events


def test_ingress_follows_exposure_and_expiry_removes_the_pod() -> None:
    world = World()
    world.add_key_secret()
    body = owner(exposure={"type": "Ingress"}, lifetime={"maxDurationSeconds": 60})
    world.run(body)
    assert ("ingress", "ns", "demo") in world.api.objects
    world.run(body, T0 + datetime.timedelta(seconds=61))
    assert body["status"]["phase"] == "Expired"
    assert ("pod", "ns", "demo") not in world.api.objects
    assert ("Normal", "MaxDurationExceeded") in world.events


def test_leaving_ingress_exposure_removes_the_ingress_but_never_a_foreign_one() -> None:
    world = World()
    world.add_key_secret()
    body = owner(exposure={"type": "Ingress"})
    world.run(body)
    assert ("ingress", "ns", "demo") in world.api.objects
    body["spec"]["exposure"] = {"type": "ClusterIP"}
    body["metadata"]["generation"] = 2
    world.run(body)
    assert ("ingress", "ns", "demo") not in world.api.objects
    assert ("Normal", "IngressDeleted") in world.events

    # An Ingress under the same name that the session does not own is left alone.
    foreign = {"metadata": {"name": "demo", "uid": "theirs"}, "spec": {}}
    world.api.objects[("ingress", "ns", "demo")] = foreign
    world.events.clear()
    body["metadata"]["generation"] = 3
    world.run(body)
    assert world.api.objects[("ingress", "ns", "demo")] is foreign
    assert ("Normal", "IngressDeleted") not in world.events


def test_expiry_policy_delete_deletes_the_session() -> None:
    world = World()
    world.add_key_secret()
    world.api.objects[("custom_object", "ns", "demo")] = {}
    body = owner(lifetime={"maxDurationSeconds": 60, "onExpiry": "Delete"})
    world.run(body)
    world.run(body, T0 + datetime.timedelta(seconds=61))
    assert "delete custom_object" in world.api.calls


def test_cleanup_deletes_every_child() -> None:
    world = World()
    world.add_key_secret()
    body = owner(exposure={"type": "Ingress"})
    world.run(body)
    deleted = children.cleanup(world.clients, parse_session(body))
    assert len(deleted) == 9
    assert list(world.api.objects) == [("secret", "ns", "ssh-key")]


def test_a_foreign_object_with_a_childs_name_is_never_taken_over() -> None:
    world = World()
    world.add_key_secret()
    foreign = {"metadata": {"name": "demo"}, "spec": {"selector": {"app": "theirs"}}}
    world.api.objects[("service", "ns", "demo")] = foreign
    body = owner()
    world.run(body)
    assert world.api.objects[("service", "ns", "demo")] is foreign
    assert "patch service" not in world.api.calls
    assert ("pod", "ns", "demo") not in world.api.objects
    assert body["status"]["phase"] == "Failed"
    pod_ready = condition(body, "PodReady")
    assert pod_ready["reason"] == "NameConflict"
    assert (
        "Service 'demo' already exists and does not belong to this session" in pod_ready["message"]
    )
    assert ("Warning", "NameConflict") in world.events
    # Once the foreign Service is gone, the session proceeds.
    del world.api.objects[("service", "ns", "demo")]
    world.run(body)
    assert ("pod", "ns", "demo") in world.api.objects


def test_cleanup_keeps_a_foreign_object_with_a_childs_name() -> None:
    world = World()
    world.add_key_secret()
    foreign = {"metadata": {"name": "demo", "uid": "theirs"}, "spec": {}}
    world.api.objects[("service", "ns", "demo")] = foreign
    body = owner()
    world.run(body)
    assert body["status"]["phase"] == "Failed"
    world.api.calls.clear()
    deleted = children.cleanup(world.clients, parse_session(body))
    assert "Service/demo" not in deleted
    assert "delete service" not in world.api.calls
    assert world.api.objects[("service", "ns", "demo")] is foreign
    # Its own children (created before the conflict) are still removed.
    assert "Secret/demo-token" in deleted


def ready_session() -> tuple[World, dict[str, Any]]:
    """A world whose session has reached Ready (two passes: pod created, then seen ready)."""
    world = World()
    world.add_key_secret()
    body = owner()
    world.run(body)
    world.run(body)
    assert body["status"]["phase"] == "Ready"
    return world, body


def test_an_evicted_pod_is_replaced() -> None:
    world, body = ready_session()
    world.pod_status = {
        "phase": "Failed",
        "reason": "Evicted",
        "message": "The node was low on resource: memory.",
    }
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    assert ("Warning", "PodReplaced") in world.events
    assert ("Warning", "Evicted") in world.events
    pod_ready = condition(body, "PodReady")
    assert pod_ready["reason"] == "Evicted"
    assert "low on resource" in pod_ready["message"]
    assert body["status"]["phase"] == "Provisioning"
    # The next pass creates a new pod.
    world.pod_status = {"conditions": [{"type": "Ready", "status": "True"}]}
    world.run(body)
    assert ("pod", "ns", "demo") in world.api.objects


SUPPORT = [
    ("secret", "ns", "demo-token"),
    ("lease", "ns", "demo-activity"),
    ("service_account", "ns", "demo-session"),
    ("role", "ns", "demo-session"),
    ("role_binding", "ns", "demo-session"),
]


def test_deleted_children_come_back_without_a_spec_change() -> None:
    world, body = ready_session()
    for key in SUPPORT:
        del world.api.objects[key]
    # A ready pod: the children come back within SUPPORT_RECHECK_PASSES passes.
    for _ in range(reconcile.SUPPORT_RECHECK_PASSES):
        world.run(body)
    assert all(key in world.api.objects for key in SUPPORT)
    world.api.calls.clear()
    world.run(body)
    assert not [c for c in world.api.calls if c.startswith("create")]
    # A pod that is not ready: they come back on the next pass.
    for key in SUPPORT:
        del world.api.objects[key]
    world.pod_status = {"phase": "Pending"}
    world.run(body)
    assert all(key in world.api.objects for key in SUPPORT)


def test_ingress_fields_dropped_from_the_spec_are_removed() -> None:
    world = World()
    world.add_key_secret()
    body = owner(
        exposure={
            "type": "Ingress",
            "host": "t.example.com",
            "ingressClassName": "nginx",
            "tls": {"secretName": "t-tls"},
            "annotations": {"nginx.ingress.kubernetes.io/limit-rps": "20"},
        }
    )
    world.run(body)
    ingress = world.api.objects[("ingress", "ns", "demo")]
    assert ingress["spec"]["tls"]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    body["spec"]["exposure"] = {"type": "Ingress", "host": "t.example.com"}
    body["metadata"]["generation"] = 2
    world.run(body)
    ingress = world.api.objects[("ingress", "ns", "demo")]
    assert "tls" not in ingress["spec"]
    assert "ingressClassName" not in ingress["spec"]
    assert "nginx.ingress.kubernetes.io/limit-rps" not in ingress["metadata"]["annotations"]
    assert "nginx.ingress.kubernetes.io/proxy-read-timeout" in ingress["metadata"]["annotations"]
    assert ingress["spec"]["rules"][0]["host"] == "t.example.com"
    assert ingress["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_an_operator_upgrade_replaces_a_pod_only_while_nobody_is_connected() -> None:
    world = World()
    world.add_key_secret()
    body = owner()
    world.run(body)
    pod = world.api.objects[("pod", "ns", "demo")]
    world.report(1)
    world.config = OperatorConfig(session_image="ec2-terminal:9.9.9", ingress=INGRESS_POLICY)
    world.run(body)
    assert world.api.objects[("pod", "ns", "demo")] is pod
    assert not [e for e in world.events if e[1] == "PodReplaced"]
    # The user disconnects: the pod is brought up to date.
    world.report(0)
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    assert ("Normal", "PodReplaced") in world.events
    world.run(body)
    assert world.api.objects[("pod", "ns", "demo")]["spec"]["containers"][0]["image"] == (
        "ec2-terminal:9.9.9"
    )


def test_suspended_and_expired_sessions_read_no_secrets() -> None:
    world = World()
    world.add_key_secret()
    body = owner(lifetime={"maxDurationSeconds": 60})
    world.run(body)
    body["spec"]["suspend"] = True
    world.run(body)
    world.api.calls.clear()
    world.run(body)
    assert "read secret" not in world.api.calls
    assert body["status"]["phase"] == "Suspended"
    body["spec"]["suspend"] = False
    world.run(body, T0 + datetime.timedelta(seconds=61))
    assert body["status"]["phase"] == "Expired"
    world.api.calls.clear()
    world.run(body, T0 + datetime.timedelta(seconds=70))
    assert "read secret" not in world.api.calls
    creds = condition(body, "CredentialsReady")
    assert creds["status"] == "True"


def test_activity_left_on_the_lease_by_an_earlier_pod_is_ignored() -> None:
    world, body = ready_session()
    world.report(1)
    world.run(body)
    assert body["status"]["activeConnections"] == 1
    # The pod is replaced (evicted): the Lease still names the old pod as its holder.
    world.pod_status = {"phase": "Failed", "reason": "Evicted"}
    world.run(body)
    world.pod_status = {"conditions": [{"type": "Ready", "status": "True"}]}
    world.run(body)
    lease = world.api.objects[("lease", "ns", "demo-activity")]
    new_uid = world.api.objects[("pod", "ns", "demo")]["metadata"]["uid"]
    assert lease["spec"]["holderIdentity"] != new_uid
    assert world.leases()[0].of(world.pods()[0]) is None
    # Its report of the new pod counts again.
    world.report(2)
    world.run(body)
    assert body["status"]["activeConnections"] == 2


def test_a_session_the_policy_refuses_gets_no_pod_and_loses_the_one_it_had() -> None:
    world, body = ready_session()
    body["spec"]["pod"] = {"image": "attacker.example/shell:latest"}
    body["metadata"]["generation"] = 2
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    assert body["status"]["phase"] == "Failed"
    accepted = condition(body, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "ImageNotAllowed")
    assert "attacker.example/shell:latest" in accepted["message"]
    assert condition(body, "Ready")["reason"] == "ImageNotAllowed"
    assert ("Warning", "ImageNotAllowed") in world.events
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    # Back to the default image: accepted again, and a pod comes back.
    body["spec"]["pod"] = {}
    body["metadata"]["generation"] = 3
    world.run(body)
    world.run(body)
    assert condition(body, "Accepted")["status"] == "True"
    assert body["status"]["phase"] == "Ready"


def test_a_secret_without_the_opt_in_is_never_mounted() -> None:
    world = World()
    world.add_key_secret()
    del world.api.objects[("secret", "ns", "ssh-key")]["metadata"]["labels"]
    body = owner()
    world.run(body)
    assert ("pod", "ns", "demo") not in world.api.objects
    creds = condition(body, "CredentialsReady")
    assert creds["reason"] == "SecretNotUsable"
    assert "ec2-terminal.io/usable-by-sessions=true" in creds["message"]
    assert "kubernetes.io/ssh-auth" in creds["message"]
    # A key Secret of the dedicated type counts as opted in.
    world.api.objects[("secret", "ns", "ssh-key")]["type"] = "kubernetes.io/ssh-auth"
    world.run(body)
    assert ("pod", "ns", "demo") in world.api.objects


def test_a_host_another_session_holds_is_refused_and_its_ingress_removed() -> None:
    world = World()
    world.add_key_secret()
    body = owner(exposure={"type": "Ingress", "host": "shared.example.com"})
    body["metadata"]["creationTimestamp"] = "2026-01-01T12:00:05Z"
    world.run(body)
    world.run(body)
    assert body["status"]["phase"] == "Ready"
    assert ("ingress", "ns", "demo") in world.api.objects
    # An older session turns out to hold the host (say, both were applied at once).
    older = Claim("2026-01-01T12:00:00Z", "other", "first", "/t/other/first/")
    world.origins["shared.example.com"] = [
        older,
        Claim(body["metadata"]["creationTimestamp"], "ns", "demo", "/t/ns/demo/"),
    ]
    body["metadata"]["generation"] = 2
    world.run(body)
    accepted = condition(body, "Accepted")
    assert (accepted["status"], accepted["reason"]) == ("False", "HostInUse")
    assert "other/first" in accepted["message"]
    assert ("ingress", "ns", "demo") not in world.api.objects
    assert ("pod", "ns", "demo") not in world.api.objects
    assert condition(body, "RouteReady")["reason"] == "NotAccepted"
    assert ("Normal", "IngressDeleted") in world.events
    assert body["status"]["phase"] == "Failed"


def test_a_new_token_rotation_value_writes_a_new_token_once() -> None:
    world, body = ready_session()
    key = ("secret", "ns", "demo-token")
    first = world.api.objects[key]["data"]["token"]
    pod = world.api.objects[("pod", "ns", "demo")]
    body["spec"]["tokenRotation"] = "2026-01-01T13:00:00Z"
    body["metadata"]["generation"] = 2
    world.run(body)
    second = world.api.objects[key]["data"]["token"]
    assert second != first
    assert len(base64.b64decode(second)) >= 32
    assert body["status"]["tokenRotation"] == "2026-01-01T13:00:00Z"
    assert ("Normal", "TokenRotated") in world.events
    # The pod stays: the server re-reads the mounted token itself.
    assert world.api.objects[("pod", "ns", "demo")] is pod
    # Handled once, even by an operator that restarted.
    world.state = reconcile.SessionState()
    world.run(body)
    assert world.api.objects[key]["data"]["token"] == second
    body["spec"]["tokenRotation"] = "2"
    world.run(body)
    assert world.api.objects[key]["data"]["token"] not in (first, second)
    assert [e for e in world.events if e[1] == "TokenRotated"] == [("Normal", "TokenRotated")] * 2
