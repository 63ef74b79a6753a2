"""One tracing setup for every process; nothing is imported or started when tracing is off."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.telemetry.settings import Component, Exporter, PodIdentity, TelemetrySettings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)


class Telemetry:
    """A process's tracing: `start` once, `shutdown` before exit (it flushes what is queued).

    With tracing off both do nothing, and the OpenTelemetry SDK is never imported.
    """

    def __init__(self, settings: TelemetrySettings) -> None:
        self.settings = settings
        self._provider: TracerProvider | None = None
        self._pid: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether this process exports spans."""
        return self.settings.enabled

    @property
    def running(self) -> bool:
        """Whether `start` made the provider in this very process (not in a parent)."""
        return self._provider is not None and self._pid == os.getpid()

    def start(self) -> Telemetry:
        """Installs the provider and instruments the libraries (once per process)."""
        if not self.enabled or self.running:
            return self
        from app.telemetry import sdk

        self._provider = sdk.start_provider(self.settings)
        self._pid = os.getpid()
        s = self.settings
        log.info(
            "tracing: %s spans of %s to %s (sampler %s)",
            s.exporter.value,
            s.component.value,
            s.shown_endpoint if s.exporter is Exporter.OTLP else "standard output",
            s.sampler.value,
        )
        return self

    def shutdown(self, *_: Any, **__: Any) -> None:
        """Exports what is queued and stops (also usable as a Celery signal receiver).

        With the collector away this waits out the exporter's retries, at most
        OTEL_EXPORTER_OTLP_TIMEOUT (10 s by default).
        """
        if self._provider is not None and self.running:
            self._provider.shutdown()
            self._provider = None

    def start_in_child(self, *_: Any, **__: Any) -> None:
        """`start` as a Celery signal receiver (worker_process_init, beat_init)."""
        self.start()


def setup_telemetry(
    component: Component,
    env: Mapping[str, str] | None = None,
    identity: PodIdentity | None = None,
) -> Telemetry:
    """Reads the OTEL_* settings for `component` and starts tracing if they ask for it."""
    return Telemetry(TelemetrySettings.from_env(component, env, identity)).start()
