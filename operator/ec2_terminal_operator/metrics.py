"""The operator's own measurements: each reconcile pass counted, timed and traced."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from enum import StrEnum
from wsgiref.simple_server import WSGIServer

import urllib3
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from app.telemetry import annotate, span

# Failures of the API server or the way to it: the loop backs off and the next pass retries.
TRANSIENT = (ApiException, urllib3.exceptions.HTTPError, OSError)


class PassResult(StrEnum):
    """How a reconcile pass ended (the `result` label)."""

    OK = "ok"
    RETRY = "retry"  # the API server refused or failed a call; the next pass tries again
    ERROR = "error"  # anything else: a fault in the operator


def classify(error: BaseException | None) -> PassResult:
    """The result of a pass that raised `error` (None: it did not)."""
    if error is None:
        return PassResult.OK
    return PassResult.RETRY if isinstance(error, TRANSIENT) else PassResult.ERROR


class OperatorMetrics:
    """The operator's Prometheus instruments, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.reconcile_total = Counter(
            "ec2_terminal_operator_reconcile",
            "Reconcile passes over a TerminalSession, by how they ended.",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_seconds = Histogram(
            "ec2_terminal_operator_reconcile_seconds",
            "Duration of a reconcile pass, its API calls included.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        for result in PassResult:  # every series exists from the start, at zero
            self.reconcile_total.labels(result.value)

    @contextlib.contextmanager
    def reconcile_pass(self, namespace: str, name: str) -> Iterator[None]:
        """Counts, times and traces one pass (the span `operator.reconcile`)."""
        started = time.perf_counter()
        result = PassResult.ERROR
        with span("operator.reconcile", {"ec2_terminal.session": f"{namespace}/{name}"}):
            try:
                yield
                result = PassResult.OK
            except BaseException as exc:
                result = classify(exc)
                raise
            finally:
                annotate({"ec2_terminal.reconcile.result": result.value})
                self.reconcile_total.labels(result.value).inc()
                self.reconcile_seconds.observe(time.perf_counter() - started)


def serve_metrics(metrics: OperatorMetrics, host: str, port: int) -> WSGIServer:
    """Serves /metrics on host:port from a thread; OSError if the port cannot be had."""
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return server
