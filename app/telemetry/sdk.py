"""The OpenTelemetry SDK for one process: resource, sampler, exporter, library instrumentation.

Imported only when tracing is on (app.telemetry.setup decides).
"""

from __future__ import annotations

import importlib.metadata
import logging
from enum import Enum

from opentelemetry import trace
from opentelemetry.sdk.resources import (
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from app.telemetry.redis import RedisHooks, library_prefixes
from app.telemetry.sampling import configured_sampler
from app.telemetry.settings import Component, Exporter, ExportProtocol, TelemetrySettings

log = logging.getLogger(__name__)


class Library(Enum):
    """Libraries whose calls become spans through their OpenTelemetry instrumentation."""

    BOTOCORE = "botocore"
    CELERY = "celery"
    HTTPX = "httpx"
    REDIS = "redis"
    URLLIB3 = "urllib3"  # the kubernetes client's transport


# What each process talks to (importing an instrumentation costs start-up time).
LIBRARIES: dict[Component, tuple[Library, ...]] = {
    Component.SESSION_SERVER: (Library.BOTOCORE, Library.HTTPX),
    Component.DEMO: (Library.BOTOCORE, Library.HTTPX),
    Component.OPERATOR: (Library.URLLIB3,),
    Component.WORKER: (
        Library.CELERY,
        Library.REDIS,
        Library.BOTOCORE,
        Library.HTTPX,
        Library.URLLIB3,
    ),
    Component.HEALTH_CHECK: (Library.CELERY, Library.REDIS, Library.URLLIB3),
}


def version() -> str:
    """This package's version (service.version)."""
    try:
        return importlib.metadata.version("ec2-terminal")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def resource(settings: TelemetrySettings) -> Resource:
    """Our attributes under OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, which win."""
    ours = {
        SERVICE_NAME: settings.component.value,
        SERVICE_VERSION: version(),
        "service.namespace": "ec2-terminal",
        **settings.identity.attributes(),
    }
    if settings.identity.pod_uid:
        ours["service.instance.id"] = settings.identity.pod_uid
    return Resource.create(ours).merge(OTELResourceDetector().detect())


def exporter(settings: TelemetrySettings) -> SpanExporter:
    """The span exporter; an OTLP exporter reads its other OTEL_EXPORTER_OTLP_* itself."""
    if settings.exporter is Exporter.CONSOLE:
        return ConsoleSpanExporter()
    if settings.protocol is ExportProtocol.GRPC:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as OTLPHttpSpanExporter,
    )

    return OTLPHttpSpanExporter(endpoint=settings.endpoint)


def instrument(library: Library, provider: TracerProvider) -> None:
    """Turns one library's calls into spans."""
    if library is Library.BOTOCORE:
        from opentelemetry.instrumentation.botocore import BotocoreInstrumentor

        BotocoreInstrumentor().instrument(  # type: ignore[no-untyped-call]
            tracer_provider=provider
        )
    elif library is Library.CELERY:
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(  # type: ignore[no-untyped-call]
            tracer_provider=provider
        )
    elif library is Library.HTTPX:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    elif library is Library.REDIS:
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        hooks = RedisHooks(library_prefixes())
        RedisInstrumentor().instrument(
            tracer_provider=provider, request_hook=hooks.request, response_hook=hooks.response
        )
    else:
        from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

        URLLib3Instrumentor().instrument(tracer_provider=provider)


def start_provider(settings: TelemetrySettings) -> TracerProvider:
    """Makes and installs the process's tracer provider and instruments its libraries."""
    provider = TracerProvider(
        sampler=configured_sampler(settings),
        resource=resource(settings),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter(settings)))
    trace.set_tracer_provider(provider)
    for library in LIBRARIES[settings.component]:
        instrument(library, provider)
    return provider
