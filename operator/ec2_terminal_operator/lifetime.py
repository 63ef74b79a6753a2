"""Lifetime arithmetic: when a session started, was last active, and whether it expired."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from collections.abc import Mapping
from typing import Any

from ec2_terminal_operator.observed import Activity, PodView, parse_time
from ec2_terminal_operator.spec import Session


class ExpiryReason(enum.Enum):
    """Why a session expired."""

    MAX_DURATION = "MaxDurationExceeded"
    IDLE = "IdleTimeout"


@dataclasses.dataclass(frozen=True)
class LifetimeState:
    """The session's clock readings for status, and the expiry verdict."""

    start_time: datetime.datetime
    ready_time: datetime.datetime | None
    last_activity: datetime.datetime | None
    active_connections: int
    expires_at: datetime.datetime
    expired: ExpiryReason | None
    expired_message: str


def _prior_expiry(prior_status: Mapping[str, Any]) -> tuple[ExpiryReason, str] | None:
    for cond in prior_status.get("conditions") or ():
        if cond.get("type") == "Expired" and cond.get("status") == "True":
            try:
                return ExpiryReason(cond.get("reason")), str(cond.get("message", ""))
            except ValueError:
                return ExpiryReason.MAX_DURATION, str(cond.get("message", ""))
    return None


def evaluate(
    session: Session,
    prior_status: Mapping[str, Any],
    pod: PodView | None,
    now: datetime.datetime,
    activity: Activity | None = None,
) -> LifetimeState:
    """Works out the session's times and whether it is (or already was) expired.

    `activity` is what the current pod reported (see `Activity.of`), if anything.
    """
    start = parse_time(prior_status.get("startTime")) or now
    ready_time = parse_time(prior_status.get("readyTime"))
    if session.suspend:
        # Idle time must not accrue while suspended: readyTime is cleared, and set again
        # when the resumed pod is ready, so idle time counts from the resume.
        ready_time = None
    elif ready_time is None and pod is not None and pod.ready and not pod.deleting:
        ready_time = now
    last_activity = parse_time(prior_status.get("lastActivityTime"))
    reported = activity.last_activity if activity is not None else None
    if reported is not None and (last_activity is None or reported > last_activity):
        last_activity = reported
    active = 0
    if activity is not None and activity.active_connections is not None:
        active = activity.active_connections
    elif pod is not None and not pod.deleting:
        active = int(prior_status.get("activeConnections") or 0)
    expires_at = start + datetime.timedelta(seconds=session.lifetime.max_duration)

    def state(reason: ExpiryReason | None, message: str) -> LifetimeState:
        return LifetimeState(
            start_time=start,
            ready_time=ready_time,
            last_activity=last_activity,
            active_connections=active if reason is None else 0,
            expires_at=expires_at,
            expired=reason,
            expired_message=message,
        )

    # Expiry is final: a later spec change does not bring an expired session back.
    prior = _prior_expiry(prior_status)
    if prior is not None:
        return state(*prior)
    if now >= expires_at:
        return state(
            ExpiryReason.MAX_DURATION,
            f"the session reached its maximum duration of {session.lifetime.max_duration}s",
        )
    # Idle time counts only for a session that has been ready (readyTime is cleared while
    # suspended): a session nobody could use yet is not idle, nor one with no pod to report.
    if ready_time is None or active > 0:
        return state(None, "")
    idle_since = max(t for t in (ready_time, last_activity) if t is not None)
    if (now - idle_since).total_seconds() >= session.lifetime.idle_timeout:
        return state(
            ExpiryReason.IDLE,
            f"no connection or activity for {session.lifetime.idle_timeout}s",
        )
    return state(None, "")
