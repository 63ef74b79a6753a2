"""`ec2-terminal health-check`: one check on the queue for each Ready session that wants one."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

from celery import Celery
from kombu.exceptions import OperationalError

from app.healthcheck.celeryapp import TASK_CHECK_SESSION
from app.healthcheck.sessions import KubeClients, SessionView, list_sessions
from app.healthcheck.settings import HealthCheckSettings

log = logging.getLogger(__name__)

# Connection attempts before giving up on Redis (the CronJob runs again on schedule).
CONNECT_RETRIES = 2


class RedisUnavailable(Exception):
    """Redis could not take the checks; the message names it (without its password)."""


@dataclasses.dataclass(frozen=True)
class EnqueueSummary:
    """Which sessions got a check, and why the others did not."""

    enqueued: tuple[str, ...]
    not_ready: tuple[str, ...]
    disabled: tuple[str, ...]

    def describe(self) -> str:
        """One line for the log and the Job's output."""
        return (
            f"enqueued {len(self.enqueued)} health check(s); skipped {len(self.not_ready)} "
            f"session(s) not Ready and {len(self.disabled)} with health checks disabled"
        )


def _select(found: Sequence[SessionView]) -> EnqueueSummary:
    return EnqueueSummary(
        enqueued=tuple(s.key for s in found if s.enabled and s.ready),
        not_ready=tuple(s.key for s in found if s.enabled and not s.ready),
        disabled=tuple(s.key for s in found if not s.enabled),
    )


def enqueue_checks(
    celery: Celery,
    kube: Callable[[], KubeClients],
    settings: HealthCheckSettings,
    namespaces: Sequence[str | None],
) -> EnqueueSummary:
    """Lists sessions (None: every namespace) and enqueues a check for each Ready, enabled one."""
    where = settings.redacted_redis_url
    try:
        with celery.connection_for_write() as connection:
            # Redis first: when it is away, say so at once, without asking the API server.
            connection.ensure_connection(max_retries=CONNECT_RETRIES)
            clients = kube()
            found = [s for ns in namespaces for s in list_sessions(clients, ns)]
            summary = _select(found)
            wanted = [s for s in found if s.key in set(summary.enqueued)]
            with celery.producer_or_acquire() as producer:
                for session in wanted:
                    celery.send_task(
                        TASK_CHECK_SESSION,
                        args=[session.namespace, session.name],
                        queue=settings.queue,
                        expires=settings.check_expires,
                        producer=producer,
                        retry=True,
                    )
                    log.debug("enqueued a check of %s", session.key)
    except (OperationalError, OSError) as exc:
        reason = str(exc)
        if settings.redis_password:
            reason = reason.replace(settings.redis_password, "***")
        raise RedisUnavailable(f"cannot reach Redis at {where}: {reason}") from None
    return summary
