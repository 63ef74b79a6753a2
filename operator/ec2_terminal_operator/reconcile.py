"""One level-triggered pass over a session: observe, act on the children, work out the status."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import kopf

from ec2_terminal_operator import admission, checks, children, kube, lifetime, origin, status
from ec2_terminal_operator.children import EventSink
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.kube import Clients, NameConflict
from ec2_terminal_operator.observed import Activity, Check, Observed, PodView
from ec2_terminal_operator.origin import Claim
from ec2_terminal_operator.spec import ExpiryPolicy, Session
from ec2_terminal_operator.status import ConditionType, EventType, OwnedStatus

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime.datetime]
# The support children are brought in line on a spec change, and otherwise every this many
# passes, so a child someone deleted (token Secret, RBAC) comes back within about five
# minutes. A recheck costs 17 requests (a create answered 409, a read, a patch for some);
# every minute that was 0.28 requests per second per session at rest, above the 0.1 of
# issue 15 (bench/operator_scale.py).
SUPPORT_RECHECK_PASSES = 60
# A missing route or a wanted pod that is not ready also brings them in line, but only this
# long after the last time: sooner, it is the pod starting or a watch event still on its
# way, not a lost child (a recheck on every pass until the pod was ready took 17 of the 45
# requests a new session made). Each such recheck that finds every child in place doubles
# the wait, up to MAX_SUPPORT_GRACE, so a pod that never gets ready costs little.
SUPPORT_GRACE = datetime.timedelta(seconds=10)
MAX_SUPPORT_GRACE = datetime.timedelta(minutes=5)


def utcnow() -> datetime.datetime:
    """The default clock."""
    return datetime.datetime.now(datetime.UTC)


def post_event(body: Mapping[str, Any], type_: EventType, reason: str, message: str) -> None:
    """The default event sink: a Kubernetes Event on the session, through kopf's poster."""
    kopf.event(cast(Any, body), type=type_, reason=reason, message=message)


@dataclasses.dataclass
class SessionState:
    """What a session's passes carry from one to the next (a restarted operator starts afresh)."""

    # The generation whose support children were last brought in line, and when.
    ensured_generation: int | None = None
    ensured_at: datetime.datetime | None = None
    grace: datetime.timedelta = SUPPORT_GRACE
    passes_since_support: int = 0
    # The status as the operator last wrote it, over a body the watch may not have updated.
    written: OwnedStatus = dataclasses.field(default_factory=OwnedStatus)


def support_due(
    state: SessionState,
    session: Session,
    route: Check,
    pod: PodView | None,
    no_pod_wanted: bool,
    now: datetime.datetime,
) -> bool:
    """Whether this pass brings the support children in line (see SUPPORT_RECHECK_PASSES)."""
    if (
        state.ensured_generation != session.generation
        or state.ensured_at is None
        or state.passes_since_support + 1 >= SUPPORT_RECHECK_PASSES
    ):
        return True
    unsettled = not route.ok or (not no_pod_wanted and (pod is None or not pod.ready))
    return unsettled and now - state.ensured_at >= state.grace


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
    state: SessionState
    # Every session's claim on an origin, by host ('' for the shared origin).
    origins: Mapping[str, Iterable[Claim]] = dataclasses.field(default_factory=dict)
    clock: Clock = utcnow
    emit: EventSink = post_event

    @property
    def owner(self) -> children.Owner:
        """The session as the owner of the children this pass makes."""
        return children.Owner(self.clients, self.config, self.session, self.body, self.emit)

    @property
    def deleting(self) -> bool:
        """The session is being deleted: its children are cleanup's, not this pass's."""
        return bool((self.body.get("metadata") or {}).get("deletionTimestamp"))


def _ensure_support(
    p: Pass,
    route: Check,
    pod: PodView | None,
    no_pod_wanted: bool,
    want_ingress: bool,
    now: datetime.datetime,
) -> tuple[Check, Check | None]:
    """Brings the support children in line when due; returns the route and any conflict."""
    session, state = p.session, p.state
    if not support_due(state, session, route, pod, no_pod_wanted, now):
        state.passes_since_support += 1
        return route, None
    state.passes_since_support = 0
    has_ingress = bool(list(p.ingresses))
    try:
        created = children.ensure_support(p.owner, has_ingress, want_ingress)
    except NameConflict as exc:
        conflict = Check(False, "NameConflict", str(exc))
        return conflict, conflict
    state.ensured_generation, state.ensured_at = session.generation, now
    state.grace = SUPPORT_GRACE if created else min(2 * state.grace, MAX_SUPPORT_GRACE)
    return checks.route_check(session, p.config, want_ingress, [True], [True]), None


def _rotate(p: Pass, handled: str | None) -> tuple[str | None, Check | None]:
    """Acts on a new spec.tokenRotation; returns the value now handled and any conflict."""
    session = p.session
    if not session.token_rotation or session.token_rotation == handled:
        return handled, None
    try:
        children.rotate_token(p.owner)
    except NameConflict as exc:
        return handled, Check(False, "NameConflict", str(exc))
    return session.token_rotation, None


def reconcile(p: Pass) -> dict[str, Any]:
    """Runs one level-triggered pass; returns the status merge patch (may be empty).

    A session being deleted gets its status (Terminating) and nothing else: its children
    are cleanup's, and recreating one now would race it.
    """
    session, config = p.session, p.config
    prior_status: Mapping[str, Any] = p.body.get("status") or {}
    now = p.clock()
    pod = children.pick_pod(p.pods)
    route_plan = origin.plan(session, config.ingress)
    claims = p.origins.get(origin.claim_key(route_plan), ()) if route_plan else ()
    created = str((p.body.get("metadata") or {}).get("creationTimestamp") or "")
    accepted = admission.admit(session, config, route_plan, claims, created)
    no_pod_wanted = p.deleting or session.suspend or status.is_expired(prior_status)
    creds = checks.prior_check(prior_status, ConditionType.CREDENTIALS_READY)
    if creds is None or not checks.credentials_verdict_stands(creds, pod, no_pod_wanted):
        creds = checks.check_credentials(p.clients, session, config.pod_policy)

    want_ingress = route_plan is not None and accepted.ok
    route = checks.route_check(session, config, want_ingress, p.services, p.ingresses)
    conflict: Check | None = None
    rotated: str | None = prior_status.get("tokenRotation")
    if not p.deleting:
        route, conflict = _ensure_support(p, route, pod, no_pod_wanted, want_ingress, now)
    if not p.deleting and conflict is None:
        rotated, conflict = _rotate(p, rotated)

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
    if (
        not p.deleting
        and conflict is None
        and (session.suspend or life.expired is not None or creds.ok or not accepted.ok)
    ):
        try:
            connected = bool(activity is not None and activity.active_connections)
            children.ensure_pod(p.owner, pod, want_pod, why_not, connected)
        except NameConflict as exc:
            conflict = Check(False, "NameConflict", str(exc))

    observed = Observed(
        deleting=p.deleting,
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
        p.owner.event(event.type, event.reason, event.message)
    if verdict.phase.value != prior_status.get("phase"):
        logger.info(
            "session %s/%s: phase %s -> %s",
            session.namespace,
            session.name,
            prior_status.get("phase"),
            verdict.phase.value,
        )
    expired_delete = life.expired is not None and session.lifetime.on_expiry is ExpiryPolicy.DELETE
    if expired_delete and not p.deleting:
        kube.delete_session(p.clients, session)
    return status.status_changes(prior_status, verdict.status)
