"""The sampler: OTEL_TRACES_SAMPLER's choice, without client calls that belong to no trace."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.trace import sampling
from opentelemetry.trace import Link, SpanKind, TraceState, get_current_span
from opentelemetry.util.types import Attributes

from app.telemetry.settings import SamplerName, TelemetrySettings


class InTracesOnly(sampling.Sampler):
    """Drops a client span that would start a trace of its own, then asks `inner`.

    Background polling (kombu's housekeeping, the queue depth read on every scrape, activity
    reports on the Lease, AWS readiness refreshes) would otherwise make a one-span trace every
    few seconds. A Redis, HTTP or AWS call made while handling something is kept.
    """

    def __init__(self, inner: sampling.Sampler) -> None:
        self._inner = inner

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> sampling.SamplingResult:
        parent = get_current_span(parent_context).get_span_context()
        if kind is SpanKind.CLIENT and not parent.is_valid:
            return sampling.SamplingResult(sampling.Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"InTracesOnly{{{self._inner.get_description()}}}"


def configured_sampler(settings: TelemetrySettings) -> sampling.Sampler:
    """The sampler OTEL_TRACES_SAMPLER (and _ARG) name, wrapped in InTracesOnly."""
    ratio = settings.ratio
    inner: sampling.Sampler
    match settings.sampler:
        case SamplerName.ALWAYS_ON:
            inner = sampling.ALWAYS_ON
        case SamplerName.ALWAYS_OFF:
            inner = sampling.ALWAYS_OFF
        case SamplerName.RATIO:
            inner = sampling.TraceIdRatioBased(ratio)
        case SamplerName.PARENT_ALWAYS_ON:
            inner = sampling.ParentBased(sampling.ALWAYS_ON)
        case SamplerName.PARENT_ALWAYS_OFF:
            inner = sampling.ParentBased(sampling.ALWAYS_OFF)
        case SamplerName.PARENT_RATIO:
            inner = sampling.ParentBasedTraceIdRatio(ratio)
    return InTracesOnly(inner)
