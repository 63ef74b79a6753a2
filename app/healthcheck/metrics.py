"""The worker's Prometheus metrics, added to by every pool process and served by the main one."""

from __future__ import annotations

import bisect
import logging
import math
import multiprocessing
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.healthcheck.check import SKIPPED
from app.healthcheck.results import CheckResult

log = logging.getLogger(__name__)

# `failed`: the check raised (API server down, time limit) and wrote nothing.
FAILED = "failed"
RESULT_LABELS = (*(r.value for r in CheckResult), SKIPPED, FAILED)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class SharedCheckStats:
    """Check counts and durations in shared memory, made before the pool forks.

    Celery runs checks in child processes; counters there would be lost to the main
    process that serves /metrics, so each child adds to these arrays under one lock.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("fork")
        self._lock = ctx.Lock()
        self._counts = ctx.RawArray("d", len(RESULT_LABELS))
        # Per bucket (not cumulative), the last one for +Inf.
        self._buckets = ctx.RawArray("d", len(BUCKETS) + 1)
        self._sum = ctx.RawValue("d", 0.0)

    def record(self, label: str, seconds: float | None) -> None:
        """Counts one check; `seconds` (when it probed) also goes into the histogram."""
        index = RESULT_LABELS.index(label)
        with self._lock:
            self._counts[index] += 1
            if seconds is not None:
                self._buckets[bisect.bisect_left(BUCKETS, seconds)] += 1
                self._sum.value += seconds

    def snapshot(self) -> tuple[dict[str, float], list[float], float]:
        """Counts by result, per-bucket counts (last: above every bound), and the sum."""
        with self._lock:
            counts = dict(zip(RESULT_LABELS, self._counts, strict=True))
            return counts, list(self._buckets), float(self._sum.value)


class WorkerCollector(Collector):
    """Reads the shared stats and the queue depth at scrape time."""

    def __init__(self, stats: SharedCheckStats, queue_depth: Callable[[], int]) -> None:
        self._stats = stats
        self._queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        counts, buckets, total = self._stats.snapshot()
        checks = CounterMetricFamily(
            "ec2_terminal_health_checks",
            "Health checks by result (skipped: another check of the session ran; failed: "
            "nothing written).",
            labels=["result"],
        )
        for label, value in counts.items():
            checks.add_metric([label], value)
        yield checks
        cumulative: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip((*BUCKETS, math.inf), buckets, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == math.inf else repr(bound), running))
        yield HistogramMetricFamily(
            "ec2_terminal_health_check_seconds",
            "Duration of a check that probed: reading the session, the probes, writing status.",
            buckets=cumulative,
            sum_value=total,
        )
        depth = GaugeMetricFamily(
            "ec2_terminal_health_check_queue_depth",
            "Checks waiting in the Redis queue (NaN while Redis cannot be asked).",
        )
        try:
            depth.add_metric([], float(self._queue_depth()))
        except Exception as exc:  # a scrape must answer even while Redis is down
            log.debug("queue depth unavailable: %s", exc)
            depth.add_metric([], math.nan)
        yield depth


def registry_for(stats: SharedCheckStats, queue_depth: Callable[[], int]) -> CollectorRegistry:
    """A registry holding the worker's metrics only."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(WorkerCollector(stats, queue_depth))
    return registry
