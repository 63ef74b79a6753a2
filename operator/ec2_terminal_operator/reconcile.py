"""I/O: makes a session's children match its spec and works out its status."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import json
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any, Literal, cast

import kopf
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ec2_terminal_operator import admission, lifetime, origin, resources, status
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.observed import Activity, Check, Observed, PodView
from ec2_terminal_operator.origin import Claim
from ec2_terminal_operator.policy import PodPolicy
from ec2_terminal_operator.spec import (
    GROUP,
    PLURAL,
    VERSION,
    AccessMethod,
    ExpiryPolicy,
    ExposureType,
    SecretKeyRef,
    Session,
)

logger = logging.getLogger(__name__)

Outcome = Literal["created", "patched", "exists"]
# Calls pass _preload_content=False: turning every response into the client's model objects
# costs more CPU than the rest of a reconcile pass, and the operator needs none of them.
Clock = Callable[[], datetime.datetime]
# ensure_support runs on a spec change, a missing route or a pod that is not ready, and
# otherwise every this many passes, so a child someone deleted (token Secret, RBAC) comes
# back within a minute or so; cheap, since creates of existing objects return 409.
SUPPORT_RECHECK_PASSES = 12
EventSink = Callable[[Mapping[str, Any], str, str, str], None]


@dataclasses.dataclass(frozen=True)
class Clients:
    """The typed Kubernetes API groups the operator talks to."""

    core: client.CoreV1Api
    networking: client.NetworkingV1Api
    rbac: client.RbacAuthorizationV1Api
    custom: client.CustomObjectsApi
    coordination: client.CoordinationV1Api

    @classmethod
    def from_api_client(cls, api: client.ApiClient) -> Clients:
        """Wraps one configured ApiClient."""
        return cls(
            core=client.CoreV1Api(api),
            networking=client.NetworkingV1Api(api),
            rbac=client.RbacAuthorizationV1Api(api),
            custom=client.CustomObjectsApi(api),
            coordination=client.CoordinationV1Api(api),
        )


def utcnow() -> datetime.datetime:
    """The default clock."""
    return datetime.datetime.now(datetime.UTC)


def post_event(body: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
    """The default event sink: a Kubernetes Event on the session, through kopf's poster."""
    kopf.event(cast(Any, body), type=type_, reason=reason, message=message)


class NameConflict(Exception):
    """A child's name is taken by an object this session does not own; it is left alone."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(
            f"{kind} {name!r} already exists and does not belong to this session: "
            "rename the session or remove that object"
        )
        self.kind = kind


def _create_or_patch(
    create: Callable[..., Any],
    read: Callable[..., Any],
    patch: Callable[..., Any] | None,
    namespace: str,
    manifest: dict[str, Any],
    prune: bool = False,
) -> Outcome:
    """Creates a child, or brings an existing one in line (fixed names make this idempotent).

    An existing object is touched only if it is owned by the same session, so a session can
    never take over, say, a Service someone else created under the same name. With `prune`,
    the patch also removes what the manifest no longer has (see `_removals`).
    """
    name = manifest["metadata"]["name"]
    try:
        create(namespace=namespace, body=manifest, _preload_content=False)
        return "created"
    except ApiException as exc:
        if exc.status != 409:
            raise
    existing = json.loads(read(name=name, namespace=namespace, _preload_content=False).data)
    if not _owner_uids(manifest) & _owner_uids(existing):
        raise NameConflict(str(manifest["kind"]), name)
    if patch is None:
        return "exists"
    body = _removals(manifest, existing) if prune else manifest
    patch(name=name, namespace=namespace, body=body, _preload_content=False)
    return "patched"


def _removals(manifest: dict[str, Any], existing: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest plus explicit nulls for top-level spec fields and annotations it dropped.

    A merge patch only adds and changes keys: without the nulls an Ingress would keep its
    tls, ingressClassName or an annotation after they were removed from the session. The
    operator owns every annotation and spec field of the objects it prunes.
    """
    body = copy.deepcopy(manifest)
    spec = body.setdefault("spec", {})
    for key in (existing.get("spec") or {}).keys() - spec.keys():
        spec[key] = None
    annotations = body["metadata"].setdefault("annotations", {})
    for key in ((existing.get("metadata") or {}).get("annotations") or {}).keys() - set(
        annotations
    ):
        annotations[key] = None
    return body


def _delete(delete: Callable[..., Any], name: str, namespace: str) -> bool:
    """Deletes a child; False when it was already gone."""
    try:
        delete(
            name=name,
            namespace=namespace,
            propagation_policy="Background",
            _preload_content=False,
        )
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def _owner_uids(obj: Mapping[str, Any]) -> set[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return {str(r.get("uid")) for r in refs if r.get("uid")}


def _delete_owned(
    read: Callable[..., Any], delete: Callable[..., Any], name: str, namespace: str, uid: str
) -> Literal["deleted", "gone", "foreign"]:
    """Deletes a child only if the session `uid` owns it.

    Children have fixed names, so an object under a child's name may be someone else's (the
    NameConflict case): it is read first and left alone unless owned, and the DELETE carries
    its uid as a precondition, so an object replaced in between is not deleted either.
    """
    try:
        obj = json.loads(read(name=name, namespace=namespace, _preload_content=False).data)
    except ApiException as exc:
        if exc.status == 404:
            return "gone"
        raise
    if uid not in _owner_uids(obj):
        return "foreign"
    options = {
        "propagationPolicy": "Background",
        "preconditions": {"uid": (obj.get("metadata") or {}).get("uid")},
    }
    try:
        delete(name=name, namespace=namespace, body=options, _preload_content=False)
    except ApiException as exc:
        # 404: gone meanwhile; 409: the precondition failed, it is a different object now.
        if exc.status == 404:
            return "gone"
        if exc.status == 409:
            return "foreign"
        raise
    return "deleted"


def check_secret_key(
    api: client.CoreV1Api,
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
        response = api.read_namespaced_secret(
            name=ref.name, namespace=namespace, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            msg = f"{what} Secret {ref.name!r} not found in namespace {namespace}"
            return Check(False, "SecretNotFound", msg)
        if exc.status == 403:
            return Check(False, "SecretForbidden", f"the operator may not read Secret {ref.name!r}")
        raise
    secret: dict[str, Any] = json.loads(response.data)  # type: ignore[arg-type]
    if not admission.secret_usable(secret, private_key, pod_policy):
        message = admission.not_usable_message(what, ref.name, private_key, pod_policy)
        return Check(False, "SecretNotUsable", message)
    if ref.key not in (secret.get("data") or {}):
        msg = f"{what} Secret {ref.name!r} has no key {ref.key!r}"
        return Check(False, "SecretKeyNotFound", msg)
    return Check(True, "SecretFound", f"{what} Secret {ref.name!r} has key {ref.key!r}")


def check_credentials(api: client.CoreV1Api, session: Session, pod_policy: PodPolicy) -> Check:
    """CredentialsReady: the Secrets the pod mounts (private key, known_hosts) are usable."""
    checks: list[Check] = []
    ns = session.namespace
    key = resources.mounted_key(session)
    if key is not None:
        checks.append(check_secret_key(api, ns, key, "credentials", True, pod_policy))
    known_hosts = resources.mounted_known_hosts(session)
    if known_hosts is not None:
        checks.append(check_secret_key(api, ns, known_hosts, "known_hosts", False, pod_policy))
    for check in checks:
        if not check.ok:
            return check
    if session.target.access_method is AccessMethod.EC2_INSTANCE_CONNECT and not checks:
        return Check(True, "InstanceConnect", "EC2 Instance Connect pushes a one-time key")
    return Check(True, "SecretFound", "; ".join(c.message for c in checks))


def _prior_condition(prior_status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in prior_status.get("conditions") or ():
        if cond.get("type") == kind:
            return dict(cond)
    return None


def rotate_token(clients: Clients, session: Session) -> None:
    """Writes a fresh random token into the session's token Secret (if the session owns it).

    The kubelet refreshes the mounted file within about a minute; the server then reads the
    new token and drops every login made with the old one.
    """
    name = resources.token_secret_name(session)
    read: Callable[..., Any] = clients.core.read_namespaced_secret
    existing = json.loads(read(name=name, namespace=session.namespace, _preload_content=False).data)
    if session.uid not in _owner_uids(existing):
        raise NameConflict("Secret", name)
    body = resources.build_token_secret(session, secrets.token_urlsafe(32))
    clients.core.patch_namespaced_secret(
        name=name, namespace=session.namespace, body={"data": body["data"]}, _preload_content=False
    )


def ensure_token_secret(clients: Clients, session: Session, owner: Mapping[str, Any]) -> Outcome:
    """Creates the token Secret once; only `rotate_token` replaces the token."""
    manifest = resources.build_token_secret(session, secrets.token_urlsafe(32))
    kopf.adopt(manifest, owner=cast(Any, owner))
    return _create_or_patch(
        clients.core.create_namespaced_secret,
        clients.core.read_namespaced_secret,
        None,
        session.namespace,
        manifest,
    )


def ensure_support(
    clients: Clients,
    session: Session,
    config: OperatorConfig,
    owner: Mapping[str, Any],
    emit: EventSink,
    has_ingress: bool = True,
    want_ingress: bool = False,
) -> None:
    """Everything but the pod: NetworkPolicy, token Secret, Lease, RBAC, Service, Ingress.

    `want_ingress`: exposed by Ingress and accepted by the operator's policy; otherwise an
    Ingress the session owns is deleted (`has_ingress` False, from the ingress index, spares
    that DELETE when there is none).
    """
    ns = session.namespace
    outcomes: list[tuple[str, str, Outcome]] = []
    outcomes.append(
        (
            "Secret",
            resources.token_secret_name(session),
            ensure_token_secret(clients, session, owner),
        )
    )
    steps: list[
        tuple[
            str, Callable[..., Any], Callable[..., Any], Callable[..., Any] | None, dict[str, Any]
        ]
    ] = [
        (
            "Lease",
            clients.coordination.create_namespaced_lease,
            clients.coordination.read_namespaced_lease,
            None,  # the session pod writes it; its spec is the pod's report, not ours
            resources.build_lease(session),
        ),
        (
            "ServiceAccount",
            clients.core.create_namespaced_service_account,
            clients.core.read_namespaced_service_account,
            None,
            resources.build_service_account(session),
        ),
        (
            "Role",
            clients.rbac.create_namespaced_role,
            clients.rbac.read_namespaced_role,
            clients.rbac.patch_namespaced_role,
            resources.build_role(session),
        ),
        (
            "RoleBinding",
            clients.rbac.create_namespaced_role_binding,
            clients.rbac.read_namespaced_role_binding,
            None,  # roleRef is immutable and fixed by name; nothing to patch
            resources.build_role_binding(session),
        ),
        (
            "Service",
            clients.core.create_namespaced_service,
            clients.core.read_namespaced_service,
            clients.core.patch_namespaced_service,
            resources.build_service(session, config),
        ),
    ]
    if config.network.enabled:
        # Before the pod: it never runs without its NetworkPolicy.
        steps.insert(
            0,
            (
                "NetworkPolicy",
                clients.networking.create_namespaced_network_policy,
                clients.networking.read_namespaced_network_policy,
                clients.networking.patch_namespaced_network_policy,
                resources.build_network_policy(session, config),
            ),
        )
    else:
        _delete_owned(
            clients.networking.read_namespaced_network_policy,
            clients.networking.delete_namespaced_network_policy,
            resources.network_policy_name(session),
            ns,
            session.uid,
        )
    if want_ingress:
        steps.append(
            (
                "Ingress",
                clients.networking.create_namespaced_ingress,
                clients.networking.read_namespaced_ingress,
                clients.networking.patch_namespaced_ingress,
                resources.build_ingress(session, config),
            )
        )
    elif (
        has_ingress
        and _delete_owned(
            clients.networking.read_namespaced_ingress,
            clients.networking.delete_namespaced_ingress,
            resources.ingress_name(session),
            ns,
            session.uid,
        )
        == "deleted"
    ):
        why = (
            "the operator's policy refuses it"
            if session.exposure.type is ExposureType.INGRESS
            else "exposure.type is no longer Ingress"
        )
        emit(owner, "Normal", "IngressDeleted", f"deleted Ingress: {why}")
    for kind, create, read, patch, manifest in steps:
        kopf.adopt(manifest, owner=cast(Any, owner))
        prune = kind in ("Ingress", "NetworkPolicy")
        outcome = _create_or_patch(create, read, patch, ns, manifest, prune=prune)
        outcomes.append((kind, manifest["metadata"]["name"], outcome))
    for kind, name, outcome in outcomes:
        if outcome == "created":
            logger.info("session %s/%s: created %s %s", ns, session.name, kind, name)
            emit(owner, "Normal", f"{kind}Created", f"created {kind} {name}")


def pick_pod(pods: Iterable[PodView]) -> PodView | None:
    """The session's pod from the index (a live one over one being deleted)."""
    found = sorted(pods, key=lambda p: p.deleting)
    return found[0] if found else None


def ensure_pod(
    clients: Clients,
    session: Session,
    config: OperatorConfig,
    owner: Mapping[str, Any],
    pod: PodView | None,
    want: bool,
    why_not: str,
    emit: EventSink,
    connected: bool = False,
) -> None:
    """Creates, replaces or removes the session pod so it matches `want` and the spec.

    `connected`: the pod reports a browser attached, so only a spec change replaces it.
    """
    ns = session.namespace
    if not want:
        if (
            pod is not None
            and not pod.deleting
            and _delete(clients.core.delete_namespaced_pod, pod.name, ns)
        ):
            logger.info("session %s/%s: deleted pod (%s)", ns, session.name, why_not)
            emit(owner, "Normal", "PodDeleted", f"deleted pod {pod.name}: {why_not}")
        return
    manifest = resources.build_pod(session, config)
    annotations = manifest["metadata"]["annotations"]
    desired_hash = annotations[resources.ANNOTATION_CONFIG_HASH]
    if pod is None:
        kopf.adopt(manifest, owner=cast(Any, owner))
        create, read = clients.core.create_namespaced_pod, clients.core.read_namespaced_pod
        if _create_or_patch(create, read, None, ns, manifest) == "created":
            logger.info("session %s/%s: created pod", ns, session.name)
            emit(owner, "Normal", "PodCreated", f"created Pod {manifest['metadata']['name']}")
        return
    if pod.deleting:
        return
    # A replaced pod is deleted here and created on a later pass, once it is gone (the name
    # is fixed).
    if pod.finished:
        # Failed or Succeeded (evicted, node shut down): it never runs again.
        type_, why = "Warning", f"it {pod.phase.lower()} ({pod.describe_end()})"
    elif pod.config_hash != desired_hash:
        # Pod specs are immutable: a changed spec means a new pod.
        type_, why = "Normal", "its spec changed"
    elif pod.pod_hash != annotations[resources.ANNOTATION_POD_HASH] and not connected:
        # Only operator settings changed (an upgrade, a new default image): the pod still
        # works, so it is replaced only while nobody is connected, never under a live terminal.
        type_, why = "Normal", "operator settings changed and nobody is connected"
    else:
        return
    if _delete(clients.core.delete_namespaced_pod, pod.name, ns):
        logger.info("session %s/%s: replacing pod %s: %s", ns, session.name, pod.name, why)
        emit(owner, type_, "PodReplaced", f"replacing pod {pod.name}: {why}")


def _route_check(
    session: Session,
    config: OperatorConfig,
    want_ingress: bool,
    services: Iterable[Any],
    ingresses: Iterable[Any],
) -> Check:
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


@dataclasses.dataclass
class Pass:
    """One reconcile pass over one session: its inputs and collaborators."""

    clients: Clients
    config: OperatorConfig
    body: Mapping[str, Any]
    session: Session
    pods: Iterable[PodView]
    services: Iterable[Any]
    leases: Iterable[Activity]
    ingresses: Iterable[Any]
    memo: MutableMapping[str, Any]
    # Every session's claim on an origin, by host ('' for the shared origin).
    origins: Mapping[str, Iterable[Claim]] = dataclasses.field(default_factory=dict)
    clock: Clock = utcnow
    emit: EventSink = post_event


def _rotate(p: Pass) -> str | None:
    """Handles a new spec.tokenRotation; returns the value now handled."""
    session = p.session
    rotate_token(p.clients, session)
    secret = resources.token_secret_name(session)
    logger.info("session %s/%s: rotated the token", session.namespace, session.name)
    p.emit(
        p.body,
        "Normal",
        "TokenRotated",
        f"wrote a new token into Secret {secret} (spec.tokenRotation "
        f"{session.token_rotation!r}): logins made with the old one end once the pod sees it",
    )
    return session.token_rotation


def reconcile(p: Pass) -> dict[str, Any]:
    """Runs one level-triggered pass; returns the status merge patch (may be empty)."""
    session, config = p.session, p.config
    prior_status: Mapping[str, Any] = p.body.get("status") or {}
    now = p.clock()
    pod = pick_pod(p.pods)
    route_plan = origin.plan(session, config.ingress)
    claims = p.origins.get(origin.claim_key(route_plan), ()) if route_plan else ()
    created = str((p.body.get("metadata") or {}).get("creationTimestamp") or "")
    accepted = admission.admit(session, config, route_plan, claims, created)
    # The Secret is read while there is no pod; a running pod has its key mounted already,
    # and re-reading Secrets on every pass of every session would load the API server.
    # A suspended or expired session wants no pod, so its Secrets are not read either: the
    # last verdict stands until the session resumes.
    prior_creds = _prior_condition(prior_status, "CredentialsReady")
    no_pod_wanted = session.suspend or status.is_expired(prior_status)
    if prior_creds is not None and (
        no_pod_wanted or (pod is not None and prior_creds.get("status") == "True")
    ):
        creds = Check(
            prior_creds.get("status") == "True",
            str(prior_creds.get("reason")),
            str(prior_creds.get("message")),
        )
    else:
        creds = check_credentials(p.clients.core, session, config.pod_policy)

    conflict: Check | None = None
    want_ingress = route_plan is not None and accepted.ok
    route = _route_check(session, config, want_ingress, p.services, p.ingresses)
    passes = int(p.memo.get("passes_since_support", 0)) + 1
    if (
        p.memo.get("ensured_generation") != session.generation
        or not route.ok
        or (not no_pod_wanted and (pod is None or not pod.ready))
        or passes >= SUPPORT_RECHECK_PASSES
    ):
        has_ingress = bool(list(p.ingresses))
        passes = 0
        try:
            ensure_support(p.clients, session, config, p.body, p.emit, has_ingress, want_ingress)
        except NameConflict as exc:
            conflict = route = Check(False, "NameConflict", str(exc))
        else:
            p.memo["ensured_generation"] = session.generation
            route = _route_check(session, config, want_ingress, [True], [True])
    p.memo["passes_since_support"] = passes
    rotated = prior_status.get("tokenRotation")
    if conflict is None and session.token_rotation and session.token_rotation != rotated:
        try:
            rotated = _rotate(p)
        except NameConflict as exc:
            conflict = Check(False, "NameConflict", str(exc))

    activity = next((a for a in p.leases if a.of(pod) is not None), None)
    life = lifetime.evaluate(session, prior_status, pod, now, activity)
    want_pod = (
        accepted.ok
        and creds.ok
        and not session.suspend
        and life.expired is None
        and conflict is None
    )
    if life.expired is not None:
        why_not = "session expired"
    elif not accepted.ok:
        why_not = f"the operator's policy refuses the session ({accepted.reason})"
    else:
        why_not = "spec.suspend is true"
    if conflict is None and (
        session.suspend or life.expired is not None or creds.ok or not accepted.ok
    ):
        try:
            connected = bool(activity is not None and activity.active_connections)
            ensure_pod(
                p.clients, session, config, p.body, pod, want_pod, why_not, p.emit, connected
            )
        except NameConflict as exc:
            conflict = Check(False, "NameConflict", str(exc))

    observed = Observed(
        deleting=False,
        credentials=creds,
        pod=pod if want_pod else None,
        route=route,
        health_check=prior_status.get("healthCheck") or {},
        conflict=conflict,
        accepted=accepted,
        token_rotation=rotated,
    )
    verdict = status.compute(session, observed, life, prior_status, config, now)
    for event in verdict.events:
        p.emit(p.body, event.type, event.reason, event.message)
    if verdict.phase.value != prior_status.get("phase"):
        logger.info(
            "session %s/%s: phase %s -> %s",
            session.namespace,
            session.name,
            prior_status.get("phase"),
            verdict.phase.value,
        )
    if life.expired is not None and session.lifetime.on_expiry is ExpiryPolicy.DELETE:
        delete_session(p.clients, session)
    return status.status_changes(prior_status, verdict.status)


def delete_session(clients: Clients, session: Session) -> None:
    """Deletes the TerminalSession itself (lifetime.onExpiry: Delete)."""
    try:
        clients.custom.delete_namespaced_custom_object(
            group=GROUP,
            version=VERSION,
            namespace=session.namespace,
            plural=PLURAL,
            name=session.name,
        )
        logger.info("session %s/%s: deleted after expiry", session.namespace, session.name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def cleanup(clients: Clients, session: Session) -> list[str]:
    """Deletes every child the session owns; works with or without the garbage collector.

    An object under a child's name that the session does not own (NameConflict) is kept.
    """
    ns = session.namespace
    deleted: list[str] = []
    core, rbac, net, coord = clients.core, clients.rbac, clients.networking, clients.coordination
    for kind, read, delete, name in (
        ("Pod", core.read_namespaced_pod, core.delete_namespaced_pod, resources.pod_name(session)),
        (
            "Ingress",
            net.read_namespaced_ingress,
            net.delete_namespaced_ingress,
            resources.ingress_name(session),
        ),
        (
            "NetworkPolicy",
            net.read_namespaced_network_policy,
            net.delete_namespaced_network_policy,
            resources.network_policy_name(session),
        ),
        (
            "Service",
            core.read_namespaced_service,
            core.delete_namespaced_service,
            resources.service_name(session),
        ),
        (
            "Secret",
            core.read_namespaced_secret,
            core.delete_namespaced_secret,
            resources.token_secret_name(session),
        ),
        (
            "Lease",
            coord.read_namespaced_lease,
            coord.delete_namespaced_lease,
            resources.lease_name(session),
        ),
        (
            "RoleBinding",
            rbac.read_namespaced_role_binding,
            rbac.delete_namespaced_role_binding,
            resources.rbac_name(session),
        ),
        (
            "Role",
            rbac.read_namespaced_role,
            rbac.delete_namespaced_role,
            resources.rbac_name(session),
        ),
        (
            "ServiceAccount",
            core.read_namespaced_service_account,
            core.delete_namespaced_service_account,
            resources.rbac_name(session),
        ),
    ):
        outcome = _delete_owned(read, delete, name, ns, session.uid)
        if outcome == "deleted":
            deleted.append(f"{kind}/{name}")
        elif outcome == "foreign":
            logger.info(
                "session %s/%s: kept %s %s, not owned by the session", ns, session.name, kind, name
            )
    logger.info("session %s/%s: cleaned up %s", ns, session.name, ", ".join(deleted) or "nothing")
    return deleted
