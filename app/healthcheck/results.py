"""What a check found: the closed set of results, and how probe outcomes become one verdict."""

from __future__ import annotations

import dataclasses
import datetime
from enum import StrEnum
from typing import Any


class CheckResult(StrEnum):
    """The values of status.healthCheck.result."""

    OK = "ok"
    UNREACHABLE = "unreachable"
    DNS = "dns"
    BANNER_TIMEOUT = "banner-timeout"
    POD_NOT_READY = "pod-not-ready"
    INSTANCE_IMPAIRED = "instance-impaired"
    INSTANCE_STOPPED = "instance-stopped"


# When several probes fail, the verdict is the one that explains the most: a stopped
# instance explains the refused connection, and a target problem explains more about
# TargetReachable than the session pod's own readiness does.
PRECEDENCE = (
    CheckResult.INSTANCE_STOPPED,
    CheckResult.INSTANCE_IMPAIRED,
    CheckResult.DNS,
    CheckResult.UNREACHABLE,
    CheckResult.BANNER_TIMEOUT,
    CheckResult.POD_NOT_READY,
    CheckResult.OK,
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One probe's finding, with a message a person can act on."""

    result: CheckResult
    message: str
    # Only for a target that answered: TCP connect plus SSH banner, in milliseconds.
    latency_ms: float | None = None


def verdict(*outcomes: Outcome | None) -> Outcome:
    """The outcome that explains the most; an ok verdict keeps the target's latency."""
    found = [o for o in outcomes if o is not None]
    if not found:
        raise ValueError("a check needs at least one probe outcome")
    worst = min(found, key=lambda o: PRECEDENCE.index(o.result))
    if worst.result is not CheckResult.OK:
        others = [o.message for o in found if o is not worst and o.result is not CheckResult.OK]
        if not others:
            return worst
        return Outcome(worst.result, "; also: ".join([worst.message, *others]))
    latency = next((o.latency_ms for o in found if o.latency_ms is not None), None)
    messages = "; ".join(o.message for o in found if o.message)
    return Outcome(CheckResult.OK, messages, latency)


def format_time(when: datetime.datetime) -> str:
    """RFC 3339 UTC with microseconds, so two checks in one second still order."""
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(raw: Any) -> datetime.datetime | None:
    """A time written by format_time (or any RFC 3339 time); None if absent or unreadable."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


@dataclasses.dataclass(frozen=True)
class HealthRecord:
    """The status.healthCheck object one check writes."""

    time: datetime.datetime
    outcome: Outcome
    task_id: str
    # The trace of the check (from the CronJob's enqueue on), when it was traced.
    trace_id: str | None = None

    def to_status(self) -> dict[str, Any]:
        """The status.healthCheck object (None values delete stale keys in a merge patch)."""
        latency = self.outcome.latency_ms
        return {
            "time": format_time(self.time),
            "result": self.outcome.result.value,
            "latencyMs": round(latency, 1) if latency is not None else None,
            "taskId": self.task_id,
            "message": self.outcome.message,
            "traceId": self.trace_id,
        }
