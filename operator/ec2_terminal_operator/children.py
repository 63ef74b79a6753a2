"""Brings a session's children in line with its spec, replaces its pod, and removes them."""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import kopf

from ec2_terminal_operator import kube, resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.kube import Clients, NameConflict, Outcome, Removal
from ec2_terminal_operator.observed import PodView
from ec2_terminal_operator.spec import ExposureType, Session
from ec2_terminal_operator.status import EventType

logger = logging.getLogger(__name__)

# (session body, Event type, reason, message)
EventSink = Callable[[Mapping[str, Any], EventType, str, str], None]


@dataclasses.dataclass(frozen=True)
class Owner:
    """A session as the owner of its children: what making them takes."""

    clients: Clients
    config: OperatorConfig
    session: Session
    # The session object: the owner kopf.adopt writes into children, and Events refer to.
    body: Mapping[str, Any]
    emit: EventSink

    def adopted(self, child: kube.Child) -> dict[str, Any]:
        """The child's manifest with the session as its controlling owner."""
        manifest = child.build(self.session, self.config)
        kopf.adopt(manifest, owner=cast(Any, self.body))
        return manifest

    def event(self, type_: EventType, reason: str, message: str) -> None:
        """Posts an Event on the session."""
        self.emit(self.body, type_, reason, message)


def ensure_support(owner: Owner, has_ingress: bool = True, want_ingress: bool = False) -> bool:
    """Every child but the pod: NetworkPolicy, token Secret, Lease, RBAC, Service, Ingress.

    True if any of them had to be created.

    `want_ingress`: exposed by Ingress and accepted by the operator's policy; otherwise an
    Ingress the session owns is deleted (`has_ingress` False, from the ingress index, spares
    that DELETE when there is none). Likewise the NetworkPolicy with `network.enabled` off.
    """
    clients, session = owner.clients, owner.session
    ns = session.namespace
    wanted = {kube.NETWORK_POLICY: owner.config.network.enabled, kube.INGRESS: want_ingress}
    created: list[tuple[str, str]] = []
    for child in kube.CHILDREN:
        if child is kube.POD:
            continue
        if wanted.get(child, True):
            manifest = owner.adopted(child)
            if kube.create_or_patch(clients, child, ns, manifest) is Outcome.CREATED:
                created.append((child.kind, manifest["metadata"]["name"]))
        elif child is not kube.INGRESS:
            kube.delete_owned(clients, child, session)
        elif has_ingress and kube.delete_owned(clients, child, session) is Removal.DELETED:
            why = (
                "the operator's policy refuses it"
                if session.exposure.type is ExposureType.INGRESS
                else "exposure.type is no longer Ingress"
            )
            owner.event("Normal", "IngressDeleted", f"deleted Ingress: {why}")
    if created:
        # One Event for the lot (a new session's seven children were seven Event POSTs);
        # a single child made again (say a deleted Secret) keeps its own reason.
        listed = ", ".join(f"{kind} {name}" for kind, name in created)
        logger.info("session %s/%s: created %s", ns, session.name, listed)
        reason = f"{created[0][0]}Created" if len(created) == 1 else "ChildrenCreated"
        owner.event("Normal", reason, f"created {listed}")
    return bool(created)


def rotate_token(owner: Owner) -> None:
    """Writes a fresh random token into the session's token Secret (if the session owns it).

    The kubelet refreshes the mounted file within about a minute; the server then reads the
    new token and drops every login made with the old one.
    """
    clients, session = owner.clients, owner.session
    name = kube.TOKEN_SECRET.name(session)
    existing = kube.read_json(clients, kube.TOKEN_SECRET, name, session.namespace)
    if session.uid not in kube.owner_uids(existing):
        raise NameConflict(kube.TOKEN_SECRET.kind, name)
    body = resources.build_token_secret(session, secrets.token_urlsafe(32))
    kube.TOKEN_SECRET.call(
        clients, kube.Verb.PATCH, session.namespace, name, {"data": body["data"]}
    )
    logger.info("session %s/%s: rotated the token", session.namespace, session.name)
    owner.event(
        "Normal",
        "TokenRotated",
        f"wrote a new token into Secret {name} (spec.tokenRotation "
        f"{session.token_rotation!r}): logins made with the old one end once the pod sees it",
    )


def pick_pod(pods: Iterable[PodView]) -> PodView | None:
    """The session's pod from the index (a live one over one being deleted)."""
    found = sorted(pods, key=lambda p: p.deleting)
    return found[0] if found else None


@dataclasses.dataclass(frozen=True)
class Replacement:
    """Why a pod must go; it is deleted now and created again once it is gone."""

    type: EventType
    why: str


def replacement(pod: PodView, manifest: Mapping[str, Any], connected: bool) -> Replacement | None:
    """Whether a live pod must be replaced to match `manifest` (None: it stays).

    `connected`: the pod reports a browser attached, so only a spec change replaces it.
    """
    annotations = manifest["metadata"]["annotations"]
    if pod.finished:
        # Failed or Succeeded (evicted, node shut down): it never runs again.
        return Replacement("Warning", f"it {pod.phase.lower()} ({pod.describe_end()})")
    if pod.config_hash != annotations[resources.ANNOTATION_CONFIG_HASH]:
        # Pod specs are immutable: a changed spec means a new pod.
        return Replacement("Normal", "its spec changed")
    if pod.pod_hash != annotations[resources.ANNOTATION_POD_HASH] and not connected:
        # Only operator settings changed (an upgrade, a new default image): the pod still
        # works, so it is replaced only while nobody is connected, never under a live terminal.
        return Replacement("Normal", "operator settings changed and nobody is connected")
    return None


def ensure_pod(
    owner: Owner, pod: PodView | None, want: bool, why_not: str, connected: bool = False
) -> None:
    """Creates, replaces or removes the session pod so it matches `want` and the spec."""
    clients, session = owner.clients, owner.session
    ns = session.namespace
    if not want:
        if pod is not None and not pod.deleting and kube.delete(clients, kube.POD, pod.name, ns):
            logger.info("session %s/%s: deleted pod (%s)", ns, session.name, why_not)
            owner.event("Normal", "PodDeleted", f"deleted pod {pod.name}: {why_not}")
        return
    if pod is None:
        manifest = owner.adopted(kube.POD)
        if kube.create_or_patch(clients, kube.POD, ns, manifest) is Outcome.CREATED:
            logger.info("session %s/%s: created pod", ns, session.name)
            owner.event("Normal", "PodCreated", f"created Pod {manifest['metadata']['name']}")
        return
    if pod.deleting:
        return
    change = replacement(pod, kube.POD.build(session, owner.config), connected)
    # The name is fixed: the new pod is created on a later pass, once this one is gone.
    if change is not None and kube.delete(clients, kube.POD, pod.name, ns):
        logger.info("session %s/%s: replacing pod %s: %s", ns, session.name, pod.name, change.why)
        owner.event(change.type, "PodReplaced", f"replacing pod {pod.name}: {change.why}")


def cleanup(clients: Clients, session: Session) -> list[str]:
    """Deletes every child the session owns; works with or without the garbage collector.

    The pod goes first and the NetworkPolicy last, so the pod is never unfenced. An object
    under a child's name that the session does not own (NameConflict) is kept.
    """
    ns = session.namespace
    deleted: list[str] = []
    for child in reversed(kube.CHILDREN):
        name = child.name(session)
        outcome = kube.delete_owned(clients, child, session)
        if outcome is Removal.DELETED:
            deleted.append(f"{child.kind}/{name}")
        elif outcome is Removal.FOREIGN:
            logger.info(
                "session %s/%s: kept %s %s, not owned by the session",
                ns,
                session.name,
                child.kind,
                name,
            )
    logger.info("session %s/%s: cleaned up %s", ns, session.name, ", ".join(deleted) or "nothing")
    return deleted
