"""Admission: whether the operator's policy lets a session have what it asks for (pure)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ec2_terminal_operator import ingress_annotations, origin
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.network import NetworkSettings
from ec2_terminal_operator.observed import ACCEPTED, Check
from ec2_terminal_operator.origin import Claim, Route
from ec2_terminal_operator.policy import IngressPolicy, PodPolicy, Toleration
from ec2_terminal_operator.spec import Session

# A Secret a session may mount must say so: this label, or (for a private key) its type.
LABEL_USABLE = "ec2-terminal.io/usable-by-sessions"
SSH_AUTH_TYPE = "kubernetes.io/ssh-auth"


def image_allowed(image: str, default_image: str, allowed: Sequence[str]) -> bool:
    """Whether a session may run `image`: the operator's own, or one the policy lists."""
    if image == default_image:
        return True
    for pattern in allowed:
        if pattern.endswith("*"):
            if image.startswith(pattern[:-1]):
                return True
        elif image == pattern:
            return True
    return False


def check_pod(session: Session, default_image: str, policy: PodPolicy) -> Check:
    """The session's image, nodeSelector and tolerations against the policy."""
    image = session.pod.image
    if image and not image_allowed(image, default_image, policy.allowed_images):
        allowed = ", ".join((default_image, *policy.allowed_images))
        return Check(
            False,
            "ImageNotAllowed",
            f"spec.pod.image {image!r} is not allowed by the operator's policy "
            f"(allowed: {allowed}); leave it unset for the default session image",
        )
    for key, value in session.pod.node_selector.items():
        values = policy.allowed_node_selectors.get(key)
        if values is None or ("*" not in values and value not in values):
            return Check(
                False,
                "NodeSelectorNotAllowed",
                f"spec.pod.nodeSelector {key}={value} is not allowed by the operator's policy"
                + _listing(f"{k}={'|'.join(v)}" for k, v in policy.allowed_node_selectors.items()),
            )
    for raw in session.pod.tolerations:
        toleration = Toleration.from_raw(raw)
        if toleration not in policy.allowed_tolerations:
            return Check(
                False,
                "TolerationNotAllowed",
                f"spec.pod.tolerations {toleration.describe()} is not allowed by the operator's "
                "policy" + _listing(t.describe() for t in policy.allowed_tolerations),
            )
    return ACCEPTED


def _listing(items: Iterable[str]) -> str:
    listed = ", ".join(items)
    return f" (allowed: {listed})" if listed else " (none are allowed)"


def secret_usable(secret: Mapping[str, Any], private_key: bool, policy: PodPolicy) -> bool:
    """Whether a Secret opted in to being mounted by sessions (label, or ssh-auth type)."""
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_USABLE) == "true":
        return True
    return private_key and policy.trust_ssh_auth_secrets and secret.get("type") == SSH_AUTH_TYPE


def not_usable_message(what: str, name: str, private_key: bool, policy: PodPolicy) -> str:
    """Why a Secret may not be mounted, and how its owner opts in."""
    how = f"label it {LABEL_USABLE}=true"
    if private_key and policy.trust_ssh_auth_secrets:
        how += f" or make it a Secret of type {SSH_AUTH_TYPE}"
    return f"{what} Secret {name!r} is not marked for use by sessions: {how}"


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Whether a host matches a DNS name or a *.suffix pattern (exactly one label below)."""
    for pattern in patterns:
        if pattern.startswith("*."):
            label, _, rest = host.partition(".")
            if label and rest == pattern[2:]:
                return True
        elif host == pattern:
            return True
    return False


def check_target(session: Session, network: NetworkSettings) -> Check:
    """The target's port (and address, if literal) against the egress policy."""
    if not (network.enabled and network.egress_enabled):
        return ACCEPTED
    target = session.target
    if target.port not in network.ssh.ports:
        ports = ", ".join(str(p) for p in network.ssh.ports)
        return Check(
            False,
            "TargetNotAllowed",
            f"target.port {target.port} is not allowed by the egress policy (SSH ports: {ports})",
        )
    if target.host:
        try:
            address = ipaddress.ip_address(target.host)
        except ValueError:
            return ACCEPTED  # a DNS name: the NetworkPolicy decides on the resolved address
        if not any(block.contains(address) for block in network.ssh.blocks):
            return Check(
                False,
                "TargetNotAllowed",
                f"target.host {target.host} is outside the egress policy's SSH destinations",
            )
    return ACCEPTED


def check_route(
    session: Session,
    route: Route | None,
    policy: IngressPolicy,
    claims: Iterable[Claim],
    created: str,
) -> Check:
    """The Ingress class, host, annotations and origin of a session exposed by Ingress."""
    if route is None:
        return ACCEPTED
    exposure = session.exposure
    cls = exposure.ingress_class_name
    if cls is not None and cls != policy.class_name and cls not in policy.allowed_class_names:
        allowed = [c for c in (policy.class_name, *policy.allowed_class_names) if c]
        return Check(
            False,
            "IngressClassNotAllowed",
            f"exposure.ingressClassName {cls!r} is not allowed by the operator's policy"
            + _listing(allowed),
        )
    if exposure.host:
        own = origin.assigned_host(session, policy)
        domain = policy.session_domain
        if domain and exposure.host.endswith("." + domain) and exposure.host != own:
            return Check(
                False,
                "HostNotAllowed",
                f"exposure.host {exposure.host}: hosts under {domain} are assigned by the "
                f"operator (this session's is {own}; leave exposure.host unset to get it)",
            )
        if exposure.host != own and not host_allowed(exposure.host, policy.allowed_hosts):
            return Check(
                False,
                "HostNotAllowed",
                f"exposure.host {exposure.host} is not allowed by the operator's policy"
                + _listing(policy.allowed_hosts),
            )
    elif route.shared and not policy.allow_shared_origin:
        return Check(
            False,
            "SharedOriginRefused",
            "an Ingress without a host would share one origin with every other such session, "
            "where each session's pages can drive the others: set exposure.host, or ask the "
            "administrator for a session domain (ingress.sessionDomain)",
        )
    refused = ingress_annotations.problem(exposure.annotations)
    if refused is not None:
        return Check(False, "AnnotationNotAllowed", refused)
    mine = origin.Claim(created, session.namespace, session.name, route.base_path)
    clash = origin.conflict(route, mine, claims)
    if clash is not None:
        return Check(False, *clash)
    return ACCEPTED


def admit(
    session: Session,
    config: OperatorConfig,
    route: Route | None,
    claims: Iterable[Claim],
    created: str,
) -> Check:
    """Accepted, or the first of the session's requests the operator's policy refuses."""
    for check in (
        check_pod(session, config.session_image, config.pod_policy),
        check_target(session, config.network),
        check_route(session, route, config.ingress, claims, created),
    ):
        if not check.ok:
            return check
    return ACCEPTED
