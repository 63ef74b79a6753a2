"""Conditions, phase and Events of a session, computed from what was observed."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ec2_terminal_operator import resources
from ec2_terminal_operator.config import OperatorConfig
from ec2_terminal_operator.lifetime import LifetimeState
from ec2_terminal_operator.observed import Observed, format_time, parse_time
from ec2_terminal_operator.spec import ExposureType, Session

ConditionStatus = Literal["True", "False", "Unknown"]
EventType = Literal["Normal", "Warning"]


class Phase(enum.Enum):
    """The session's phase (status.phase)."""

    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    READY = "Ready"
    SUSPENDED = "Suspended"
    EXPIRED = "Expired"
    FAILED = "Failed"
    TERMINATING = "Terminating"


class ConditionType(enum.Enum):
    """The session's condition types, in the order they are listed."""

    ACCEPTED = "Accepted"
    CREDENTIALS_READY = "CredentialsReady"
    POD_READY = "PodReady"
    ROUTE_READY = "RouteReady"
    TARGET_REACHABLE = "TargetReachable"
    READY = "Ready"
    EXPIRED = "Expired"


# False conditions with these reasons are the normal way to Ready (or a requested stop),
# not failures: they get Normal Events; every other False gets a Warning.
_EXPECTED_REASONS = frozenset(
    {
        "PodStarting",
        "PodNotCreated",
        # The Accepted condition carries the Warning; PodReady only follows it.
        "NotAccepted",
        "PodReplacing",
        "Suspended",
        "NotExpired",
        "Provisioning",
        "NotChecked",
        "HealthCheckDisabled",
        "Terminating",
        "ContainerCreating",
        # Expiry is the lifetime working as asked, not a fault.
        "Expired",
        "PodRemoved",
        "MaxDurationExceeded",
        "IdleTimeout",
    }
)
# Transient reasons that get no Event at all: the condition says it, and the Event would
# tell nothing the children's own Events do not. `PodCreating` is every new session's first
# pass (the pod was just created, the watch has not brought it yet) and right after its
# `PodCreated` (or `PodReplaced`) Event: one more POST per session for nothing (issue 15).
_SILENT_REASONS = frozenset({"PodCreating"})
_REACHABLE_RESULTS = frozenset({"ok", "success", "reachable"})
# Waiting reasons of a container that will not get better by itself.
_STUCK_REASONS = frozenset(
    {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"}
)


@dataclasses.dataclass(frozen=True)
class Condition:
    """One status condition, as Kubernetes API conventions define it (minus the time)."""

    type: ConditionType
    status: ConditionStatus
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post on the session."""

    type: EventType
    reason: str
    message: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The computed status patch and the Events that go with the transitions in it."""

    status: dict[str, Any]
    phase: Phase
    events: tuple[Event, ...]


def _accepted(observed: Observed) -> Condition:
    a = observed.accepted
    return Condition(ConditionType.ACCEPTED, "True" if a.ok else "False", a.reason, a.message)


def _credentials(session: Session, observed: Observed) -> Condition:
    c = observed.credentials
    return Condition(
        ConditionType.CREDENTIALS_READY, "True" if c.ok else "False", c.reason, c.message
    )


def _pod(
    session: Session, observed: Observed, life: LifetimeState, now: datetime.datetime
) -> tuple[Condition, bool]:
    """The PodReady condition, and whether the pod cannot come up without someone's help."""
    kind = ConditionType.POD_READY
    pod = observed.pod
    if observed.deleting:
        return Condition(kind, "False", "Terminating", "the session is being deleted"), False
    if life.expired is not None:
        return Condition(kind, "False", "PodRemoved", "the pod was removed: session expired"), False
    if session.suspend:
        return Condition(
            kind, "False", "Suspended", "the pod is stopped: spec.suspend is true"
        ), False
    if not observed.accepted.ok:
        return Condition(
            kind, "False", "NotAccepted", "no pod: the operator's policy refuses the session"
        ), True
    if observed.conflict is not None:
        # Failed at once: waiting cannot help until someone renames or removes an object.
        return Condition(kind, "False", observed.conflict.reason, observed.conflict.message), True
    if pod is None:
        if not observed.credentials.ok:
            msg = "waiting for credentials before creating the pod"
            return Condition(kind, "False", "PodNotCreated", msg), False
        return Condition(kind, "False", "PodCreating", "creating the session pod"), False
    if pod.deleting:
        return Condition(kind, "False", "PodReplacing", f"pod {pod.name} is being replaced"), False
    if pod.ready:
        return Condition(kind, "True", "PodReady", f"pod {pod.name} is ready"), False
    if pod.finished:
        # Not a dead end: the operator deletes the pod and creates a new one.
        reason = pod.reason or pod.waiting_reason or "PodFailed"
        message = f"pod {pod.name} {pod.phase.lower()} ({pod.describe_end()}); replacing it"
        return Condition(kind, "False", reason, message), False
    reason = pod.waiting_reason or "PodStarting"
    message = pod.waiting_message or f"pod {pod.name} is {pod.phase.lower()}, not ready yet"
    if life.ready_time is not None:
        # It was ready once: a later failure (a crash loop) is reported by its own reason,
        # not as a startup that took too long.
        return Condition(kind, "False", reason, message), reason in _STUCK_REASONS
    started = pod.created or life.start_time
    overdue = (now - started).total_seconds() >= session.lifetime.startup_timeout
    if overdue:
        limit = session.lifetime.startup_timeout
        message = f"pod {pod.name} not ready after {limit}s ({reason}: {message})"
        return Condition(kind, "False", "StartupTimeout", message), True
    return Condition(kind, "False", reason, message), False


def _route(session: Session, observed: Observed) -> Condition:
    r = observed.route
    return Condition(ConditionType.ROUTE_READY, "True" if r.ok else "False", r.reason, r.message)


def _target(session: Session, observed: Observed) -> Condition:
    kind = ConditionType.TARGET_REACHABLE
    if not session.health_check_enabled:
        return Condition(
            kind, "Unknown", "HealthCheckDisabled", "spec.healthCheck.enabled is false"
        )
    hc = observed.health_check
    result = hc.get("result")
    if not result:
        return Condition(kind, "Unknown", "NotChecked", "no health check has run yet")
    when = hc.get("time") or "unknown time"
    detail = hc.get("message") or ""
    if str(result).lower() in _REACHABLE_RESULTS:
        latency = hc.get("latencyMs")
        extra = f" in {latency} ms" if latency is not None else ""
        return Condition(kind, "True", "TargetReachable", f"reached at {when}{extra}")
    message = f"health check at {when}: {result}" + (f": {detail}" if detail else "")
    return Condition(kind, "False", "TargetUnreachable", message)


def _ready(
    conditions: Sequence[Condition],
    observed: Observed,
    session: Session,
    life: LifetimeState,
) -> Condition:
    kind = ConditionType.READY
    if observed.deleting:
        return Condition(kind, "False", "Terminating", "the session is being deleted")
    if life.expired is not None:
        return Condition(kind, "False", "Expired", life.expired_message)
    if session.suspend:
        return Condition(kind, "False", "Suspended", "spec.suspend is true")
    for cond in conditions:
        if cond.type is ConditionType.TARGET_REACHABLE:
            continue  # informational: the worker's verdict does not gate readiness
        if cond.status != "True":
            return Condition(kind, "False", cond.reason, cond.message)
    return Condition(kind, "True", "SessionReady", "the session accepts connections")


def _expired(life: LifetimeState) -> Condition:
    kind = ConditionType.EXPIRED
    if life.expired is None:
        return Condition(kind, "False", "NotExpired", f"expires at {format_time(life.expires_at)}")
    return Condition(kind, "True", life.expired.value, life.expired_message)


def _phase(
    conditions: Mapping[ConditionType, Condition],
    observed: Observed,
    life: LifetimeState,
    session: Session,
    pod_failed: bool,
) -> Phase:
    if observed.deleting:
        return Phase.TERMINATING
    if life.expired is not None:
        return Phase.EXPIRED
    if session.suspend:
        return Phase.SUSPENDED
    if conditions[ConditionType.READY].status == "True":
        return Phase.READY
    if pod_failed:
        return Phase.FAILED
    if conditions[ConditionType.CREDENTIALS_READY].status != "True":
        return Phase.PENDING
    return Phase.PROVISIONING


def merge_conditions(
    prior: Sequence[Mapping[str, Any]],
    current: Sequence[Condition],
    generation: int,
    now: datetime.datetime,
) -> tuple[list[dict[str, Any]], list[Condition]]:
    """Renders conditions, keeping lastTransitionTime unless the status changed.

    Also returns the conditions whose status or reason changed, which deserve an Event.
    """
    by_type = {c.get("type"): c for c in prior}
    rendered: list[dict[str, Any]] = []
    changed: list[Condition] = []
    for cond in current:
        old = by_type.get(cond.type.value)
        transition = format_time(now)
        if old is not None and old.get("status") == cond.status:
            transition = old.get("lastTransitionTime") or transition
        if old is None or old.get("status") != cond.status or old.get("reason") != cond.reason:
            changed.append(cond)
        rendered.append(
            {
                "type": cond.type.value,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": generation,
                "lastTransitionTime": transition,
            }
        )
    return rendered, changed


def _event_for(cond: Condition, first: bool) -> Event | None:
    positive_is_true = cond.type is not ConditionType.EXPIRED
    good = (cond.status == "True") == positive_is_true
    if cond.status == "Unknown" or (first and good) or cond.reason in _SILENT_REASONS:
        return None  # nothing happened yet worth a line in `kubectl describe`
    if good:
        if cond.type is ConditionType.EXPIRED:
            return None
        return Event("Normal", cond.reason, cond.message)
    if cond.reason in _EXPECTED_REASONS:
        return Event("Normal", cond.reason, cond.message)
    return Event("Warning", cond.reason, cond.message)


def compute(
    session: Session,
    observed: Observed,
    life: LifetimeState,
    prior_status: Mapping[str, Any],
    config: OperatorConfig,
    now: datetime.datetime,
) -> Verdict:
    """The operator-owned part of status.* for this pass, and its Events."""
    pod_cond, pod_failed = _pod(session, observed, life, now)
    base = [
        _accepted(observed),
        _credentials(session, observed),
        pod_cond,
        _route(session, observed),
        _target(session, observed),
    ]
    ready = _ready(base, observed, session, life)
    conditions = [*base, ready, _expired(life)]
    by_type = {c.type: c for c in conditions}
    phase = _phase(by_type, observed, life, session, pod_failed)
    prior_conditions = prior_status.get("conditions") or []
    rendered, changed = merge_conditions(prior_conditions, conditions, session.generation, now)
    first = not prior_conditions
    # Ready takes the reason and message of the condition that holds it back: one Event
    # for that change, not the same line twice.
    events = tuple(dict.fromkeys(e for e in (_event_for(c, first) for c in changed) if e))
    ready_time = life.ready_time
    status: dict[str, Any] = {
        "observedGeneration": session.generation,
        "phase": phase.value,
        "target": session.target.describe(),
        "conditions": rendered,
        "url": resources.session_url(session, config),
        "tokenSecretRef": {
            "name": resources.token_secret_name(session),
            "key": resources.TOKEN_KEY,
        },
        "podName": None
        if observed.pod is None and phase in (Phase.EXPIRED, Phase.SUSPENDED)
        else resources.pod_name(session),
        "serviceName": resources.service_name(session),
        "ingressName": resources.ingress_name(session)
        if session.exposure.type is ExposureType.INGRESS
        else None,
        "startTime": format_time(life.start_time),
        "readyTime": format_time(ready_time) if ready_time else None,
        "lastActivityTime": format_time(life.last_activity) if life.last_activity else None,
        "expiresAt": format_time(life.expires_at),
        "activeConnections": life.active_connections,
        "tokenRotation": observed.token_rotation,
    }
    return Verdict(status=status, phase=phase, events=events)


def status_changes(prior: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch turning prior into new for the operator's keys (None deletes a key)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        if value is None:
            if prior.get(key) is not None:
                patch[key] = None
        elif prior.get(key) != value:
            patch[key] = value
    return patch


def is_expired(prior_status: Mapping[str, Any]) -> bool:
    """Whether the status already records an expiry."""
    return any(
        c.get("type") == "Expired" and c.get("status") == "True"
        for c in prior_status.get("conditions") or ()
    )


def parse_status_time(prior_status: Mapping[str, Any], key: str) -> datetime.datetime | None:
    """A time field of a status, parsed."""
    return parse_time(prior_status.get(key))


class OwnedStatus:
    """The operator's own status keys as last written, laid over a possibly older body.

    A loop's next pass can start before the watch has delivered its previous status patch;
    reading that stale status would repeat transitions and their Events. The operator is the
    only writer of these keys, so what it wrote last is the truth for them.
    """

    def __init__(self) -> None:
        self._written: dict[str, Any] = {}

    def view(self, status: Mapping[str, Any]) -> dict[str, Any]:
        """`status` with the keys the operator wrote last as it wrote them."""
        merged = dict(status)
        for key, value in self._written.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def record(self, patch: Mapping[str, Any]) -> None:
        """Remembers a status patch the API server accepted."""
        self._written.update(patch)
