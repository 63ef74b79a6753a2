"""The prerequisites a pass checks: the Secrets the pod mounts, and the session's route."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from ec2_terminal_operator import admission, kube, resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.observed import Check, PodView
from ec2_terminal_operator.policy import PodPolicy
from ec2_terminal_operator.spec import AccessMethod, ExposureType, SecretKeyRef, Session
from ec2_terminal_operator.status import ConditionType


def check_secret_key(
    clients: kube.Clients,
    namespace: str,
    ref: SecretKeyRef,
    what: str,
    private_key: bool,
    pod_policy: PodPolicy,
) -> Check:
    """Whether a referenced Secret may be mounted and has the key (values are never logged).

    A Secret must opt in (admission.secret_usable): otherwise whoever may create a session
    could have the operator mount any Secret of the namespace into a pod.
    """
    try:
        secret = kube.read_secret(clients, ref.name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            msg = f"{what} Secret {ref.name!r} not found in namespace {namespace}"
            return Check(False, "SecretNotFound", msg)
        if exc.status == 403:
            return Check(False, "SecretForbidden", f"the operator may not read Secret {ref.name!r}")
        raise
    if not admission.secret_usable(secret, private_key, pod_policy):
        message = admission.not_usable_message(what, ref.name, private_key, pod_policy)
        return Check(False, "SecretNotUsable", message)
    if ref.key not in (secret.get("data") or {}):
        msg = f"{what} Secret {ref.name!r} has no key {ref.key!r}"
        return Check(False, "SecretKeyNotFound", msg)
    return Check(True, "SecretFound", f"{what} Secret {ref.name!r} has key {ref.key!r}")


def check_credentials(clients: kube.Clients, session: Session, pod_policy: PodPolicy) -> Check:
    """CredentialsReady: the Secrets the pod mounts (private key, known_hosts) are usable."""
    checks: list[Check] = []
    ns = session.namespace
    key = resources.mounted_key(session)
    if key is not None:
        checks.append(check_secret_key(clients, ns, key, "credentials", True, pod_policy))
    known_hosts = resources.mounted_known_hosts(session)
    if known_hosts is not None:
        checks.append(check_secret_key(clients, ns, known_hosts, "known_hosts", False, pod_policy))
    for check in checks:
        if not check.ok:
            return check
    if session.target.access_method is AccessMethod.EC2_INSTANCE_CONNECT and not checks:
        return Check(True, "InstanceConnect", "EC2 Instance Connect pushes a one-time key")
    return Check(True, "SecretFound", "; ".join(c.message for c in checks))


def prior_check(prior_status: Mapping[str, Any], kind: ConditionType) -> Check | None:
    """A condition of the status as it stands, read back as a Check (None when absent)."""
    for cond in prior_status.get("conditions") or ():
        if cond.get("type") == kind.value:
            return Check(
                cond.get("status") == "True", str(cond.get("reason")), str(cond.get("message"))
            )
    return None


def credentials_verdict_stands(
    prior: Check | None, pod: PodView | None, no_pod_wanted: bool
) -> bool:
    """Whether the last CredentialsReady verdict stands, so no Secret is read this pass.

    The Secrets are read while there is no pod; a running pod has its key mounted already,
    and re-reading Secrets on every pass of every session would load the API server. A
    session that wants no pod (suspended, expired, being deleted) reads none either: the
    last verdict stands until it wants one again.
    """
    if prior is None:
        return False
    return no_pod_wanted or (pod is not None and prior.ok)


def route_check(
    session: Session,
    config: OperatorConfig,
    want_ingress: bool,
    services: Iterable[Any],
    ingresses: Iterable[Any],
) -> Check:
    """RouteReady: the Service and (for exposure by Ingress) the accepted Ingress exist."""
    if not list(services):
        return Check(
            False, "ServiceNotFound", f"Service {resources.service_name(session)} not found"
        )
    if session.exposure.type is ExposureType.INGRESS and not want_ingress:
        return Check(False, "NotAccepted", "no Ingress: the operator's policy refuses the session")
    if session.exposure.type is not ExposureType.INGRESS:
        return Check(
            True, "ServiceReady", f"Service {resources.service_name(session)} routes to the pod"
        )
    if not list(ingresses):
        return Check(
            False, "IngressNotFound", f"Ingress {resources.ingress_name(session)} not found"
        )
    return Check(
        True,
        "IngressReady",
        f"Ingress {resources.ingress_name(session)} routes "
        + resources.session_url(session, config),
    )
