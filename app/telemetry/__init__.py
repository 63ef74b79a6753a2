"""Tracing with OpenTelemetry: settings, the setup every process calls, and `traced`.

Nothing imported from here loads OpenTelemetry; it is loaded only once tracing starts.
"""

from app.telemetry.settings import Component, PodIdentity, TelemetrySettings
from app.telemetry.setup import Telemetry, setup_telemetry
from app.telemetry.spans import annotate, current_trace_id, record_span, span, traced

__all__ = [
    "Component",
    "PodIdentity",
    "Telemetry",
    "TelemetrySettings",
    "annotate",
    "current_trace_id",
    "record_span",
    "setup_telemetry",
    "span",
    "traced",
]
