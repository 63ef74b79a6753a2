"""The `health-check` and `worker` subcommands of `ec2-terminal`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Any

from app.errors import ConfigurationError
from app.healthcheck.settings import HealthCheckSettings
from app.settings import LogLevel

log = logging.getLogger(__name__)

LOG_LEVELS = [level.value for level in LogLevel]


def health_check(args: argparse.Namespace) -> int:
    """Enqueues a check for every Ready session; 1 with a message if Kubernetes or Redis fail."""
    from app.healthcheck.celeryapp import create_celery
    from app.healthcheck.enqueue import RedisUnavailable, enqueue_checks
    from app.healthcheck.sessions import KubeClients, KubeUnavailable

    settings = HealthCheckSettings.from_env()
    namespaces: list[str | None] = list(args.namespace) if args.namespace else [None]
    try:
        summary = enqueue_checks(create_celery(settings), KubeClients.load, settings, namespaces)
    except (RedisUnavailable, KubeUnavailable) as exc:
        print(f"ec2-terminal health-check: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    return 0


def worker(args: argparse.Namespace) -> int:
    """Runs the Celery worker (and, with --beat, the schedule that checks one server)."""
    from app.healthcheck.worker import run_worker

    settings = HealthCheckSettings.from_env()
    if args.concurrency is not None:
        settings = dataclasses.replace(settings, concurrency=args.concurrency)
    if args.beat and not settings.server_url:
        raise ConfigurationError(
            "--beat checks one session server: set EC2_TERMINAL_SERVER_URL (and EC2_TERMINAL_HOST "
            "or EC2_TERMINAL_INSTANCE_ID for its target)"
        )
    return run_worker(settings, args.beat, args.log_level)


def add_parsers(commands: Any) -> None:
    """Adds `health-check` and `worker` to the `ec2-terminal` command."""
    enqueue = commands.add_parser(
        "health-check",
        help="enqueue a health check for every Ready TerminalSession (what the CronJob runs)",
        description="Lists TerminalSessions and enqueues a Celery health check on Redis for each "
        "Ready one with spec.healthCheck.enabled. Settings: EC2_TERMINAL_REDIS_URL, "
        "EC2_TERMINAL_REDIS_PASSWORD(_FILE), EC2_TERMINAL_HEALTH_* (docs/healthcheck.md).",
    )
    enqueue.add_argument(
        "--namespace",
        action="append",
        help="only sessions in this namespace (repeatable; default: every namespace)",
    )
    enqueue.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log level")
    enqueue.set_defaults(func=health_check)
    run = commands.add_parser(
        "worker",
        help="run the Celery worker that checks sessions and writes status.healthCheck",
        description="A Celery worker (prefork) consuming health checks from Redis, with "
        "/healthz, /readyz and /metrics on EC2_TERMINAL_WORKER_LISTEN_HOST:PORT. SIGTERM "
        "finishes the running checks, then exits.",
    )
    run.add_argument(
        "--beat",
        action="store_true",
        help="also run the beat schedule: check EC2_TERMINAL_SERVER_URL every "
        "EC2_TERMINAL_HEALTH_INTERVAL seconds (no Kubernetes needed)",
    )
    run.add_argument(
        "--concurrency", type=int, help="worker processes [env EC2_TERMINAL_WORKER_CONCURRENCY]"
    )
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS, help="log level")
    run.set_defaults(func=worker)
