"""What the operator saw of a session's world: its pod, its activity, its Secrets, its route."""

from __future__ import annotations

import dataclasses
import datetime
import logging
from collections.abc import Mapping
from typing import Any

from ec2_terminal_operator.resources import (
    ANNOTATION_ACTIVE_CONNECTIONS,
    ANNOTATION_CONFIG_HASH,
    ANNOTATION_LAST_ACTIVITY,
    ANNOTATION_POD_HASH,
    CONTAINER_NAME,
)

logger = logging.getLogger(__name__)


def parse_time(raw: object) -> datetime.datetime | None:
    """Reads an RFC 3339 timestamp as an aware UTC datetime; None when absent or unreadable."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        value = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC)


def format_time(value: datetime.datetime) -> str:
    """RFC 3339 UTC with second precision, as Kubernetes writes times."""
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class PodView:
    """The parts of a session pod that matter to the session's status."""

    name: str
    phase: str
    ready: bool
    deleting: bool
    created: datetime.datetime | None
    config_hash: str | None
    waiting_reason: str | None
    waiting_message: str | None
    uid: str = ""
    pod_hash: str | None = None
    # status.reason and status.message of the pod itself (e.g. Evicted), set when it failed.
    reason: str | None = None
    message: str | None = None

    @property
    def finished(self) -> bool:
        """Failed or Succeeded: its containers will not run again, so it must be replaced."""
        return self.phase in ("Failed", "Succeeded")

    def describe_end(self) -> str:
        """Why a finished pod ended, for messages."""
        reason = self.reason or self.waiting_reason or self.phase
        message = self.message or self.waiting_message
        return f"{reason}: {message}" if message else reason


def pod_view(body: Mapping[str, Any]) -> PodView:
    """Builds a PodView from a Pod body."""
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    annotations = meta.get("annotations") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    waiting_reason = waiting_message = None
    for cs in status.get("containerStatuses") or ():
        if cs.get("name") != CONTAINER_NAME:
            continue
        state = cs.get("state") or {}
        detail = state.get("waiting") or state.get("terminated")
        if detail:
            waiting_reason = detail.get("reason")
            waiting_message = detail.get("message")
    if waiting_reason is None:
        # No container yet: the scheduler's verdict (e.g. Unschedulable) is the explanation.
        for c in status.get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                waiting_reason = c.get("reason")
                waiting_message = c.get("message")
    return PodView(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        ready=ready,
        deleting=meta.get("deletionTimestamp") is not None,
        created=parse_time(meta.get("creationTimestamp")),
        config_hash=annotations.get(ANNOTATION_CONFIG_HASH),
        waiting_reason=waiting_reason,
        waiting_message=waiting_message,
        uid=str(meta.get("uid") or ""),
        pod_hash=annotations.get(ANNOTATION_POD_HASH),
        reason=status.get("reason"),
        message=status.get("message"),
    )


@dataclasses.dataclass(frozen=True)
class Activity:
    """What a session pod reported on its Lease: attached browsers and the last input."""

    holder: str
    active_connections: int | None
    last_activity: datetime.datetime | None

    def of(self, pod: PodView | None) -> Activity | None:
        """This report if the pod made it; what an earlier pod left behind is void."""
        if pod is None or pod.deleting or not pod.uid or self.holder != pod.uid:
            return None
        return self


def activity_view(body: Mapping[str, Any]) -> Activity:
    """Reads a session Lease; bad annotations are ignored, not fatal."""
    meta = body.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    active: int | None = None
    raw_active = annotations.get(ANNOTATION_ACTIVE_CONNECTIONS)
    if raw_active is not None:
        try:
            active = max(0, int(raw_active))
        except ValueError:
            logger.warning("lease %s: ignoring bad %s annotation", meta.get("name"), raw_active)
    return Activity(
        holder=str((body.get("spec") or {}).get("holderIdentity") or ""),
        active_connections=active,
        last_activity=parse_time(annotations.get(ANNOTATION_LAST_ACTIVITY)),
    )


@dataclasses.dataclass(frozen=True)
class Check:
    """The result of checking one prerequisite: ok, or a CamelCase reason and a message."""

    ok: bool
    reason: str
    message: str


ACCEPTED = Check(True, "Accepted", "the session complies with the operator's policy")


@dataclasses.dataclass(frozen=True)
class Observed:
    """Everything one reconcile pass observed about a session."""

    deleting: bool
    credentials: Check
    pod: PodView | None
    route: Check
    health_check: Mapping[str, Any]
    # A child's name taken by an object the session does not own: nothing can proceed.
    conflict: Check | None = None
    # The operator's policy on what the session asks for (admission.py).
    accepted: Check = ACCEPTED
    # The last spec.tokenRotation the operator acted on.
    token_rotation: str | None = None
