"""The decisions a pass makes, as pure functions.

Their API calls are tested on the real API server only (test_operator_cluster.py,
test_operator_children.py): no fake stands in for how it applies a write.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest
from ec2_terminal_operator import children, kube, reconcile, resources
from ec2_terminal_operator.checks import credentials_verdict_stands, prior_check, route_check
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.observed import Check, PodView
from ec2_terminal_operator.policy import IngressPolicy
from ec2_terminal_operator.spec import Session, parse_session
from ec2_terminal_operator.status import ConditionType

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.UTC)
CONFIG = OperatorConfig(ingress=IngressPolicy(session_domain="term.example.com"))
OK = Check(True, "ServiceReady", "ok")


def session(**spec: Any) -> Session:
    base: dict[str, Any] = {
        "target": {"host": "10.0.0.5"},
        "credentialsSecretRef": {"name": "ssh-key"},
        "hostKey": {"policy": "Fingerprint", "fingerprint": "SHA256:" + "A" * 43},
    }
    base.update(spec)
    return parse_session(
        {
            "apiVersion": "ec2-terminal.io/v1alpha1",
            "kind": "TerminalSession",
            "metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1", "generation": 3},
            "spec": base,
        }
    )


def pod(**kw: Any) -> PodView:
    fields: dict[str, Any] = {
        "name": "demo",
        "phase": "Running",
        "ready": True,
        "deleting": False,
        "created": T0,
        "config_hash": None,
        "waiting_reason": None,
        "waiting_message": None,
        "uid": "pod-uid",
    }
    fields.update(kw)
    return PodView(**fields)


def current_pod(s: Session, config: OperatorConfig = CONFIG, **kw: Any) -> PodView:
    """A pod built from the session as it is now."""
    annotations = resources.build_pod(s, config)["metadata"]["annotations"]
    return pod(
        config_hash=annotations[resources.ANNOTATION_CONFIG_HASH],
        pod_hash=annotations[resources.ANNOTATION_POD_HASH],
        **kw,
    )


# --- when the support children are brought in line


def test_support_runs_on_a_new_generation_then_every_few_passes() -> None:
    s = session()
    state = reconcile.SessionState()
    assert reconcile.support_due(state, s, OK, pod(), no_pod_wanted=False, now=T0)
    state.ensured_generation, state.ensured_at = s.generation, T0
    due = []
    for i in range(2 * reconcile.SUPPORT_RECHECK_PASSES):
        now = T0 + datetime.timedelta(seconds=5 * i)
        due.append(reconcile.support_due(state, s, OK, pod(), no_pod_wanted=False, now=now))
        state.passes_since_support = 0 if due[-1] else state.passes_since_support + 1
    # A ready pod and its route: only the periodic recheck, every SUPPORT_RECHECK_PASSES.
    assert due.count(True) == 2
    assert due.index(True) == reconcile.SUPPORT_RECHECK_PASSES - 1


def test_support_runs_again_once_the_route_or_a_wanted_pod_stays_missing() -> None:
    s = session()
    state = reconcile.SessionState(ensured_generation=s.generation, ensured_at=T0)
    missing = Check(False, "ServiceNotFound", "gone")
    soon = T0 + reconcile.SUPPORT_GRACE - datetime.timedelta(seconds=1)
    late = T0 + reconcile.SUPPORT_GRACE
    for route, found in ((missing, pod()), (OK, None), (OK, pod(ready=False))):
        # Just after they were brought in line: a pod starting or a watch event on its way.
        assert not reconcile.support_due(state, s, route, found, no_pod_wanted=False, now=soon)
        assert reconcile.support_due(state, s, route, found, no_pod_wanted=False, now=late)
    # A suspended session wants no pod: its absence is no reason.
    assert not reconcile.support_due(state, s, OK, None, no_pod_wanted=True, now=late)
    # Rechecks that found every child in place stretch the wait.
    state.grace = 2 * reconcile.SUPPORT_GRACE
    assert not reconcile.support_due(state, s, OK, None, no_pod_wanted=False, now=late)
    assert reconcile.support_due(state, s, OK, None, no_pod_wanted=False, now=T0 + state.grace)


# --- when the Secrets are read


def test_the_credentials_verdict_stands_while_no_pod_is_wanted_or_a_pod_runs() -> None:
    found = Check(True, "SecretFound", "ok")
    missing = Check(False, "SecretNotFound", "gone")
    assert not credentials_verdict_stands(None, pod(), no_pod_wanted=True)  # never checked
    # Suspended, expired or being deleted: no Secret is read, whatever the last verdict.
    assert credentials_verdict_stands(found, None, no_pod_wanted=True)
    assert credentials_verdict_stands(missing, None, no_pod_wanted=True)
    # A running pod has its key mounted already.
    assert credentials_verdict_stands(found, pod(), no_pod_wanted=False)
    # Until then, and after a bad verdict, the Secret is read again.
    assert not credentials_verdict_stands(found, None, no_pod_wanted=False)
    assert not credentials_verdict_stands(missing, pod(), no_pod_wanted=False)


def test_prior_check_reads_a_condition_back() -> None:
    cond = {"type": "CredentialsReady", "status": "False", "reason": "SecretNotUsable"}
    status = {"conditions": [{**cond, "message": "m"}]}
    assert prior_check(status, ConditionType.CREDENTIALS_READY) == Check(
        False, "SecretNotUsable", "m"
    )
    assert prior_check(status, ConditionType.ROUTE_READY) is None


# --- whether a pod is replaced


def test_a_pod_matching_the_session_stays() -> None:
    s = session()
    assert children.replacement(current_pod(s), resources.build_pod(s, CONFIG), False) is None


def test_a_finished_pod_is_replaced_with_a_warning_quoting_why() -> None:
    s = session()
    evicted = current_pod(s, phase="Failed", reason="Evicted", message="low on memory")
    change = children.replacement(evicted, resources.build_pod(s, CONFIG), connected=True)
    assert change == children.Replacement("Warning", "it failed (Evicted: low on memory)")


def test_a_spec_change_replaces_the_pod_even_under_a_live_terminal() -> None:
    old = current_pod(session())
    new = resources.build_pod(session(lifetime={"idleTimeoutSeconds": 60}), CONFIG)
    assert children.replacement(old, new, connected=True) == children.Replacement(
        "Normal", "its spec changed"
    )


def test_new_operator_settings_replace_a_pod_only_while_nobody_is_connected() -> None:
    s = session()
    old = current_pod(s)
    upgraded = resources.build_pod(s, dataclasses.replace(CONFIG, session_image="ec2-terminal:9"))
    assert children.replacement(old, upgraded, connected=True) is None
    change = children.replacement(old, upgraded, connected=False)
    assert change == children.Replacement(
        "Normal", "operator settings changed and nobody is connected"
    )


def test_the_live_pod_is_picked_over_one_being_deleted() -> None:
    going, live = pod(name="old", deleting=True), pod(name="new")
    assert children.pick_pod([going, live]) == live
    assert children.pick_pod([going]) == going
    assert children.pick_pod([]) is None


# --- how a pruned child is patched


def test_removals_null_what_the_manifest_dropped() -> None:
    manifest: dict[str, Any] = {
        "metadata": {"name": "demo", "annotations": {"kept": "1"}},
        "spec": {"rules": [{"host": "a"}]},
    }
    existing = {
        "metadata": {"annotations": {"kept": "0", "dropped": "x"}},
        "spec": {"rules": [], "tls": [{"secretName": "s"}], "ingressClassName": "nginx"},
    }
    body = kube.removals(manifest, existing)
    assert body["spec"] == {"rules": [{"host": "a"}], "tls": None, "ingressClassName": None}
    assert body["metadata"]["annotations"] == {"kept": "1", "dropped": None}
    assert "tls" not in manifest["spec"], "the manifest itself is not changed"


# --- the table of children


# The path of each child's collection, as the API server serves it (`kubectl get --raw`).
COLLECTIONS = {
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies",
    "Secret": "/api/v1/namespaces/ns/secrets",
    "Lease": "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
    "ServiceAccount": "/api/v1/namespaces/ns/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/rolebindings",
    "Service": "/api/v1/namespaces/ns/services",
    "Ingress": "/apis/networking.k8s.io/v1/namespaces/ns/ingresses",
    "Pod": "/api/v1/namespaces/ns/pods",
}


@pytest.mark.parametrize("child", kube.CHILDREN, ids=lambda c: c.kind)
def test_every_child_calls_its_kinds_paths(child: kube.Child) -> None:
    assert child.path("ns") == COLLECTIONS[child.kind]
    assert child.path("ns", "x") == COLLECTIONS[child.kind] + "/x"


def test_the_table_names_children_as_the_builders_do() -> None:
    s = session(exposure={"type": "Ingress"})
    for child in kube.CHILDREN:
        manifest = child.build(s, CONFIG)
        assert manifest["kind"] == child.kind
        assert manifest["metadata"]["name"] == child.name(s)
    # Created with the NetworkPolicy first and the pod last; deleted the other way.
    assert kube.CHILDREN[0] is kube.NETWORK_POLICY
    assert kube.CHILDREN[-1] is kube.POD


def test_only_the_ingress_and_network_policy_are_pruned() -> None:
    pruned = {c.kind for c in kube.CHILDREN if c.update is kube.Update.PRUNE}
    assert pruned == {"Ingress", "NetworkPolicy"}


# --- the route


def test_route_needs_the_service_and_an_accepted_ingress() -> None:
    plain, exposed = session(), session(exposure={"type": "Ingress"})
    assert route_check(plain, CONFIG, False, [], []).reason == "ServiceNotFound"
    assert route_check(plain, CONFIG, False, ["demo"], []).reason == "ServiceReady"
    assert route_check(exposed, CONFIG, False, ["demo"], []).reason == "NotAccepted"
    assert route_check(exposed, CONFIG, True, ["demo"], []).reason == "IngressNotFound"
    ready = route_check(exposed, CONFIG, True, ["demo"], ["demo"])
    assert (ready.ok, ready.reason) == (True, "IngressReady")
    assert "http://demo-ns.term.example.com/" in ready.message
