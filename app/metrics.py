"""Prometheus metrics of one server process, in a registry of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, Metric


class TerminalBytes:
    """ec2_terminal_bytes_total as two plain integers, read when Prometheus scrapes.

    Output is counted per SSH packet (4 KiB from a PTY) and input per keystroke; a prometheus
    Counter takes a lock and several calls for each, a measurable share of the hot path.
    """

    def __init__(self) -> None:
        self.inbound = 0
        self.outbound = 0
        self._created = time.time()

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "ec2_terminal_bytes",
            "Terminal bytes moved, by direction (in: keyboard to host, out: host to browser).",
            labels=["direction"],
        )
        family.add_metric(["in"], self.inbound, created=self._created)
        family.add_metric(["out"], self.outbound, created=self._created)
        yield family


class Metrics:
    """The server's instruments; one instance per application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.active_sessions = Gauge(
            "ec2_terminal_active_sessions",
            "Terminal sessions open (attached or within their resume grace period).",
            registry=self.registry,
        )
        self.active_connections = Gauge(
            "ec2_terminal_active_connections",
            "WebSocket connections attached to a session.",
            registry=self.registry,
        )
        self.viewers = Gauge(
            "ec2_terminal_viewers",
            "Read-only viewers watching a session.",
            registry=self.registry,
        )
        self.terminal_bytes = TerminalBytes()
        self.registry.register(self.terminal_bytes)
        self.transfer_bytes = Counter(
            "ec2_terminal_transfer_bytes",
            "File bytes moved over SFTP, by direction (upload: to the target).",
            ["direction"],
            registry=self.registry,
        )
        self.ssh_connect_seconds = Histogram(
            "ec2_terminal_ssh_connect_seconds",
            "Time to connect, authenticate and open a PTY on the target.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.echo_latency_seconds = Histogram(
            "ec2_terminal_echo_latency_seconds",
            "Time from a keyboard INPUT frame's arrival to the next OUTPUT frame sent on that "
            "connection.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
            registry=self.registry,
        )
        self.stall_seconds = Counter(
            "ec2_terminal_flow_control_stall_seconds",
            "Time the target's output was paused because the browser lagged a window behind.",
            registry=self.registry,
        )
        self.errors_total = Counter(
            "ec2_terminal_errors",
            "Sessions or connections that ended in an error, by protocol error code.",
            ["code"],
            registry=self.registry,
        )
        self.sessions_total = Counter(
            "ec2_terminal_sessions",
            "Sessions started.",
            registry=self.registry,
        )
        self.last_activity = Gauge(
            "ec2_terminal_last_activity_timestamp_seconds",
            "Unix time of the last user input or resize in any session.",
            registry=self.registry,
        )
