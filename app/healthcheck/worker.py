"""`ec2-terminal worker`: a Celery worker with /healthz, /readyz and /metrics of its own."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from celery import bootsteps, signals
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from app.healthcheck.celeryapp import SOCKET_CONNECT_TIMEOUT, create_celery
from app.healthcheck.metrics import SharedCheckStats, registry_for
from app.healthcheck.settings import HealthCheckSettings
from app.telemetry import Component, Telemetry, TelemetrySettings

log = logging.getLogger(__name__)

# kombu's Redis transport keeps a queue's priorities in keys named queue + SEP + step.
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)


class BrokerState:
    """Whether the worker consumes from Redis right now (set by a consumer bootstep)."""

    def __init__(self) -> None:
        self.consuming = threading.Event()


def broker_step(state: BrokerState) -> type[bootsteps.StartStopStep]:
    """A consumer bootstep that marks `state` while the consumer runs on a live connection."""

    class TrackBroker(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, parent: Any) -> None:
            state.consuming.set()
            log.info("consuming from Redis")

        def stop(self, parent: Any) -> None:
            state.consuming.clear()

        def shutdown(self, parent: Any) -> None:
            state.consuming.clear()

    return TrackBroker


def queue_depth_reader(settings: HealthCheckSettings) -> Callable[[], int]:
    """Counts the messages waiting in the check queue (every priority level)."""
    client = redis.Redis.from_url(
        settings.broker_url, socket_timeout=2.0, socket_connect_timeout=SOCKET_CONNECT_TIMEOUT
    )
    keys = [settings.queue] + [f"{settings.queue}{PRIORITY_SEP}{p}" for p in PRIORITY_STEPS[1:]]

    def depth() -> int:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        return sum(int(n) for n in pipe.execute())

    return depth


def http_server(
    host: str, port: int, registry: CollectorRegistry, state: BrokerState
) -> ThreadingHTTPServer:
    """The worker's own endpoints, answered from this process without asking Redis."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            broker = "connected" if state.consuming.is_set() else "reconnecting"
            if self.path == "/healthz":
                # Liveness: this process answers; Redis being away is not a reason to restart.
                self._send(200, "application/json", json.dumps({"status": "ok", "broker": broker}))
            elif self.path == "/readyz":
                ok = state.consuming.is_set()
                body = {"status": "ok" if ok else "not consuming", "broker": broker}
                self._send(200 if ok else 503, "application/json", json.dumps(body))
            elif self.path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry).decode())
            else:
                self._send(404, "text/plain", "not found")

        def _send(self, code: int, content_type: str, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the kubelet and Prometheus ask every few seconds."""

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def trace_in_children(telemetry: Telemetry) -> None:
    """Tracing starts in each pool process and in beat's, never in the main process.

    An exporter's threads and gRPC channels do not survive a fork, and the main process runs
    no task: each child makes its own provider after the fork and flushes it before exiting.
    """
    if not telemetry.enabled:
        return
    signals.worker_process_init.connect(telemetry.start_in_child, weak=False)
    signals.beat_init.connect(telemetry.start_in_child, weak=False)
    signals.worker_process_shutdown.connect(telemetry.shutdown, weak=False)


def run_worker(settings: HealthCheckSettings, beat: bool, log_level: str) -> int:
    """Runs the worker until SIGTERM (a warm shutdown: running checks finish first)."""
    stats = SharedCheckStats()  # before the pool forks, so every child shares it
    trace_in_children(Telemetry(TelemetrySettings.from_env(Component.WORKER)))
    state = BrokerState()
    celery = create_celery(settings, stats)
    celery.log.already_setup = True  # app.logs configured logging; Celery keeps its hands off
    # httpx logs every request at INFO; the check's own line says what was found.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    celery.steps["consumer"].add(broker_step(state))
    registry = registry_for(stats, queue_depth_reader(settings))
    server = http_server(settings.listen_host, settings.listen_port, registry, state)
    thread = threading.Thread(target=server.serve_forever, name="worker-http", daemon=True)
    thread.start()
    log.info(
        "worker: %d process(es) on queue %s at %s; /healthz, /readyz, /metrics on %s:%d%s",
        settings.concurrency,
        settings.queue,
        settings.redacted_redis_url,
        settings.listen_host,
        server.server_address[1],
        f"; beat checks {settings.server_url} every {settings.beat_interval:g} s" if beat else "",
    )
    worker = celery.Worker(
        hostname=f"ec2-terminal.{os.getpid()}@{socket.gethostname()}",
        pool_cls="prefork",
        concurrency=settings.concurrency,
        loglevel=log_level.upper(),
        beat=beat,
        schedule_filename=str(settings.beat_schedule_file),
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        optimization="fair",
        quiet=True,
    )
    try:
        worker.start()
    finally:
        server.shutdown()
        server.server_close()
    return int(worker.exitcode or 0)
