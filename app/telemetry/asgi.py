"""Spans of the session server: one per HTTP request, one per WebSocket for its whole life.

HTTP goes through opentelemetry-instrumentation-asgi; the WebSocket gets a span of our own,
so that no frame costs more than a message-type check and events come from the bridge
(connect, resume, resize, takeover, exit, error). Spans are named after the route with the
base path left out (`GET /login`, `WebSocket /ws`), so every session pod reports the same
names. Query strings lose their values (a `?token=` must never reach a trace), and the probe
and scrape paths are traced only as part of a caller's trace: the kubelet and Prometheus
send no `traceparent`, the health-check worker does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.instrumentation.asgi import (
    OpenTelemetryMiddleware,
    asgi_getter,
    collect_request_attributes,
)
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.routing import Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.routes import CONNECTION_OBSERVER
from app.terminal.closecodes import CloseCode
from app.terminal.observer import ConnectionEvent, EventValue

# Route paths (base path left out) a probe or a scraper asks every few seconds.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/health-check/", "/metrics"})
URL_ATTRIBUTES = ("http.url", "url.full", "http.target", "url.query")
# Headers never recorded, even if OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_* asks for them.
SECRET_HEADERS = ["authorization", ".*cookie.*", ".*token.*"]
# Close codes a client's own mistake earns: not a failure of the server.
CLIENT_FAULTS = frozenset({CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG})
# Resizes are recorded as events up to this many per connection, then only counted.
MAX_RESIZE_EVENTS = 20
_QUERY = re.compile(r"\?(.*)$", re.DOTALL)


def redact_query(query: str) -> str:
    """Every value of a query string replaced: `token=abc&x` becomes `token=REDACTED&REDACTED`."""
    parts = (p.split("=", 1)[0] + "=REDACTED" if "=" in p else "REDACTED" for p in query.split("&"))
    return "&".join(parts)


def redacted(key: str, value: Any) -> Any:
    """A URL attribute's value without the query's values."""
    if not isinstance(value, str):
        return value
    if key == "url.query":
        return redact_query(value)
    return _QUERY.sub(lambda m: "?" + redact_query(m.group(1)), value)


def redact_span(span: Any, scope: Scope) -> None:
    """The ASGI instrumentation's server request hook: URL attributes lose query values."""
    attributes: Mapping[str, Any] = getattr(span, "attributes", None) or {}
    for key in URL_ATTRIBUTES:
        if key in attributes:
            span.set_attribute(key, redacted(key, attributes[key]))


def route_name(scope: Scope, base_path: str) -> str | None:
    """The matching route's path without the base path (`/recordings/{name}`), or None."""
    app = scope.get("app")
    for route in getattr(app, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            path = str(route.path) + ("/{path}" if isinstance(route, Mount) else "")
            if path.startswith(base_path):
                return "/" + path[len(base_path) :]
            return "/" if path == base_path.rstrip("/") else path
    return None


def _has_trace_context(scope: Scope) -> bool:
    return any(name == b"traceparent" for name, _ in scope.get("headers", ()))


class SpanObserver:
    """Writes a connection's events on its span (the bridge's ConnectionObserver)."""

    def __init__(self, span: trace.Span) -> None:
        self._span = span
        self._resizes = 0

    def event(self, event: ConnectionEvent, attributes: Mapping[str, EventValue]) -> None:
        span = self._span
        if event is ConnectionEvent.RESIZE:
            self._resizes += 1
            span.set_attribute("ec2_terminal.resizes", self._resizes)
            if self._resizes > MAX_RESIZE_EVENTS:
                return
        if event in (ConnectionEvent.CONNECT, ConnectionEvent.RESUME):
            span.set_attribute("ec2_terminal.session", str(attributes["session"]))
        if event is ConnectionEvent.ERROR:
            span.set_attribute("ec2_terminal.error.code", str(attributes["code"]))
            if attributes.get("close_code") not in CLIENT_FAULTS:
                span.set_status(Status(StatusCode.ERROR, str(attributes["code"])))
        span.add_event(event.value, dict(attributes))

    def message(self, message: Message) -> None:
        """What the app sends besides frames: the accept, a refusal, the close."""
        kind = message["type"]
        span = self._span
        if kind == "websocket.accept":
            span.set_attribute("http.status_code", 101)
        elif kind == "websocket.http.response.start":
            status = int(message["status"])
            span.set_attribute("http.status_code", status)
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR))
        elif kind == "websocket.close":
            code = int(message.get("code", CloseCode.NORMAL))
            span.set_attribute("websocket.close.code", code)
            if code == CloseCode.INTERNAL_ERROR:
                span.set_status(Status(StatusCode.ERROR, "closed with 1011"))


class TracingMiddleware:
    """Traces requests and WebSockets of the session server (the outermost of its middleware)."""

    def __init__(self, app: ASGIApp, base_path: str) -> None:
        self.app = app
        self.base_path = base_path
        self.tracer = trace.get_tracer(__name__)
        self.http = OpenTelemetryMiddleware(
            app,
            default_span_details=self._details,
            server_request_hook=redact_span,
            http_capture_headers_sanitize_fields=SECRET_HEADERS,
            exclude_spans=["receive", "send"],
        )

    def _details(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        route = route_name(scope, self.base_path)
        method = str(scope.get("method", "GET"))
        return (f"{method} {route}" if route else method), {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            quiet = route_name(scope, self.base_path) in QUIET_ROUTES
            if quiet and not _has_trace_context(scope):
                await self.app(scope, receive, send)
            else:
                await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = route_name(scope, self.base_path) or "/"
        attributes = {
            key: redacted(key, value)
            for key, value in collect_request_attributes(scope).items()  # type: ignore[no-untyped-call]
        }
        with self.tracer.start_as_current_span(
            f"WebSocket {route}",
            context=extract(scope, getter=cast(Any, asgi_getter)),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:
            observer = SpanObserver(span)
            connection: MutableMapping[str, Any] = scope
            connection[CONNECTION_OBSERVER] = observer

            async def traced_send(message: Message) -> None:
                if message["type"] != "websocket.send":  # frames pass untouched
                    observer.message(message)
                await send(message)

            await self.app(scope, receive, traced_send)
