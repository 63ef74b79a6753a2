"""Pytest plugin: the observability binaries (hack/otel/build) and local stacks of them.

Fixtures:

- ``otel_binaries`` (session) -> ``dict[Binary, Path]``: the collector, Jaeger, Debian's
  prometheus and promtool, upstream promtool. A missing one fails the test with the reason.
- ``otel_stack_factory`` -> ``start(targets=(), span_file=None, ports=None) -> Stack``:
  Prometheus, Jaeger and the collector on free loopback ports (or `ports`, picked beforehand with
  ``Ports.pick()`` so that applications started first point at the collector), running the
  shipped configuration (hack/otel/stack.py), ready when returned and stopped after the test.

Helpers: ``prometheus_query(stack, promql)`` (the instant vector, failing on a query error),
``jaeger_api(stack, path, **params)`` (Jaeger's JSON) and ``read_spans(path)`` (the spans the
collector's file exporter wrote, flattened).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from hack.otel.stack import Binary, PodTarget, Ports, Stack, StackError, binaries, running_stack

StackFactory = Callable[..., Stack]
# OTLP's span kinds as the file exporter writes them.
SPAN_KIND_SERVER = 2
SPAN_KIND_CLIENT = 3
SPAN_KIND_PRODUCER = 4
SPAN_KIND_CONSUMER = 5
# OTLP's status code of a failed span.
STATUS_ERROR = 2


@pytest.fixture(scope="session")
def otel_binaries() -> dict[Binary, Path]:
    """Every binary the stack needs, or a failure naming the missing ones."""
    try:
        return binaries()
    except StackError as exc:
        pytest.fail(str(exc), pytrace=False)


@contextlib.contextmanager
def stack_factory(
    directories: Callable[[], Path], paths: dict[Binary, Path]
) -> Iterator[StackFactory]:
    """Starts stacks in fresh directories; stops them all on exit."""
    with contextlib.ExitStack() as running:

        def start(
            targets: Sequence[PodTarget] = (),
            span_file: Path | None = None,
            ports: Ports | None = None,
        ) -> Stack:
            return running.enter_context(
                running_stack(directories(), targets, span_file=span_file, paths=paths, ports=ports)
            )

        yield start


@pytest.fixture
def otel_stack_factory(
    tmp_path_factory: pytest.TempPathFactory, otel_binaries: dict[Binary, Path]
) -> Iterator[StackFactory]:
    """Starts local stacks for one test."""
    with stack_factory(lambda: tmp_path_factory.mktemp("otel"), otel_binaries) as start:
        yield start


def prometheus_query(stack: Stack, promql: str) -> list[dict[str, Any]]:
    """The result of an instant query; an invalid query fails with Prometheus' error."""
    response = httpx.get(f"{stack.prometheus_url}/api/v1/query", params={"query": promql})
    body = response.json()
    assert body.get("status") == "success", f"{promql}: {body.get('error', body)}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def jaeger_api(stack: Stack, path: str, **params: str | int) -> Any:
    """GET one of Jaeger's query API paths (under /api/) and return its JSON."""
    response = httpx.get(f"{stack.jaeger_url}/api/{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()


@dataclasses.dataclass(frozen=True)
class SpanRecord:
    """One span from the collector's file exporter (OTLP JSON), flattened."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    events: list[tuple[str, dict[str, Any]]]
    status: int
    resource: dict[str, Any]


def _values(attributes: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP JSON key-value pairs as a dict (intValue arrives as a string)."""
    found: dict[str, Any] = {}
    for item in attributes:
        ((kind, value),) = item["value"].items() if item["value"] else (("stringValue", ""),)
        found[item["key"]] = int(value) if kind == "intValue" else value
    return found


def read_spans(path: Path) -> list[SpanRecord]:
    """Every span in a file exporter's output so far (no file yet: none)."""
    if not path.exists():
        return []
    spans = []
    for line in path.read_text().splitlines():
        for resource_spans in json.loads(line).get("resourceSpans", []):
            resource = _values(resource_spans.get("resource", {}).get("attributes", []))
            for scope in resource_spans.get("scopeSpans", []):
                for span in scope.get("spans", []):
                    spans.append(
                        SpanRecord(
                            service=str(resource.get("service.name", "")),
                            name=span["name"],
                            trace_id=span["traceId"],
                            span_id=span["spanId"],
                            parent_id=span.get("parentSpanId", ""),
                            kind=int(span.get("kind", 0)),
                            attributes=_values(span.get("attributes", [])),
                            events=[
                                (e["name"], _values(e.get("attributes", [])))
                                for e in span.get("events", [])
                            ],
                            status=int(span.get("status", {}).get("code", 0)),
                            resource=resource,
                        )
                    )
    return spans
