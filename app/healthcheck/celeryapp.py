"""The Celery application: Redis broker and result backend, tuned so no check is lost."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import redis
from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from app.ec2.clients import AwsClientCache
from app.healthcheck import check
from app.healthcheck.check import CheckContext, CheckReport, ProbeRuntime
from app.healthcheck.lock import SessionLocks
from app.healthcheck.metrics import FAILED, SharedCheckStats
from app.healthcheck.sessions import KubeClients, KubeUnavailable
from app.healthcheck.settings import HealthCheckSettings

log = logging.getLogger(__name__)

TASK_CHECK_SESSION = "ec2_terminal.check_session"
TASK_CHECK_SERVER = "ec2_terminal.check_server"
BEAT_ENTRY = "check-session-server"
# Redis socket timeouts: a broker that vanishes without closing the connection (failover,
# NAT) must not hang a publish or a poll forever.
SOCKET_TIMEOUT = 10.0
SOCKET_CONNECT_TIMEOUT = 5.0
# Errors a later attempt may not meet: the API server or Redis was away, or the check ran
# into its soft time limit (every probe has a shorter timeout, so something hung below them).
RETRYABLE = (
    KubeUnavailable,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    SoftTimeLimitExceeded,
)


class ProcessResources:
    """The collaborators of checks, made once per process (after Celery's fork, not before)."""

    def __init__(self, settings: HealthCheckSettings) -> None:
        self._settings = settings
        self._pid: int | None = None
        self._context: CheckContext | None = None
        self._kube: KubeClients | None = None

    def _kube_clients(self) -> KubeClients:
        if self._kube is None:
            self._kube = KubeClients.load()
        return self._kube

    def context(self) -> CheckContext:
        """This process's CheckContext (connections are never shared across a fork)."""
        if self._context is None or self._pid != os.getpid():
            s = self._settings
            client = redis.Redis.from_url(
                s.broker_url,
                socket_timeout=SOCKET_TIMEOUT,
                socket_connect_timeout=SOCKET_CONNECT_TIMEOUT,
                health_check_interval=30,
            )
            self._kube = None
            self._context = CheckContext(
                settings=s,
                locks=SessionLocks(client, s.lock_ttl),
                aws=AwsClientCache(),
                kube=self._kube_clients,
                runtime=ProbeRuntime(s.http_timeout),
            )
            self._pid = os.getpid()
        return self._context


def _config(settings: HealthCheckSettings) -> dict[str, Any]:
    s = settings
    transport = {
        "visibility_timeout": s.visibility_timeout,
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
        "socket_keepalive": True,
        "health_check_interval": 10,
        # Sweep for messages whose worker died once per tenth of the visibility timeout.
        "unacked_restore_interval": max(1, int(s.visibility_timeout / 10)),
        "unacked_restore_throttle": 1,
    }
    config: dict[str, Any] = {
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "enable_utc": True,
        "timezone": "UTC",
        # Acknowledge after the check ran, and give the message back if its process died.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": s.time_limit,
        "task_soft_time_limit": s.soft_time_limit,
        "task_default_queue": s.queue,
        "broker_transport_options": transport,
        "result_backend_transport_options": {
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT,
            "retry_policy": {"timeout": 30.0},
        },
        "result_expires": 3600,
        # Keep trying while Redis is away, at startup and later: the worker heals by itself.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_connection_timeout": SOCKET_CONNECT_TIMEOUT,
        "task_publish_retry_policy": {
            "max_retries": 3,
            "interval_start": 0.2,
            "interval_step": 0.5,
            "interval_max": 1.0,
        },
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "beat_schedule_filename": str(s.beat_schedule_file),
    }
    if s.server_url:
        config["beat_schedule"] = {
            BEAT_ENTRY: {
                "task": TASK_CHECK_SERVER,
                "schedule": s.beat_interval,
                "args": [s.server_url],
                # A check not started before the next one is due is not worth running.
                "options": {"expires": s.beat_interval},
            }
        }
    return config


def create_celery(settings: HealthCheckSettings, stats: SharedCheckStats | None = None) -> Celery:
    """The Celery app with the check tasks registered; `stats` counts what they do."""
    app = Celery(
        "ec2-terminal",
        broker=settings.broker_url,
        backend=settings.broker_url,
        set_as_current=False,
    )
    app.conf.update(_config(settings))
    resources = ProcessResources(settings)
    retry = {
        "bind": True,
        "autoretry_for": RETRYABLE,
        "retry_backoff": 2,
        "retry_backoff_max": int(settings.retry_backoff_max),
        "retry_jitter": True,
        "max_retries": settings.max_retries,
    }

    def run(work: Any) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            report: CheckReport = work()
        except RETRYABLE as exc:
            if stats is not None:
                stats.record(FAILED, time.perf_counter() - started)
            log.warning("check failed: %s", exc or type(exc).__name__)
            raise
        if stats is not None:
            stats.record(report.label, report.seconds if report.outcome is not None else None)
        return report.to_json()

    @app.task(name=TASK_CHECK_SESSION, **retry)  # type: ignore[untyped-decorator]
    def check_session(self: Any, namespace: str, name: str) -> dict[str, Any]:
        """Checks one TerminalSession and writes its status.healthCheck."""
        task_id = str(self.request.id)
        return run(lambda: check.check_session(resources.context(), namespace, name, task_id))

    @app.task(name=TASK_CHECK_SERVER, **retry)  # type: ignore[untyped-decorator]
    def check_server(self: Any, server_url: str) -> dict[str, Any]:
        """Checks a session server and its target without Kubernetes (the beat schedule's task)."""
        return run(lambda: check.check_server(resources.context(), server_url))

    return app
