"""Pytest plugin: the observability binaries (hack/otel/build) and local stacks of them.

Fixtures:

- ``otel_binaries`` (session) -> ``dict[Binary, Path]``: the collector, Jaeger, Debian's
  prometheus and promtool, upstream promtool. A missing one fails the test with the reason.
- ``otel_stack_factory`` -> ``start(targets=(), span_file=None) -> Stack``: Prometheus, Jaeger and
  the collector on free loopback ports, running the shipped configuration (hack/otel/stack.py),
  ready when returned and stopped after the test.

Helpers: ``prometheus_query(stack, promql)`` (the instant vector, failing on a query error) and
``jaeger_api(stack, path, **params)`` (Jaeger's JSON).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from hack.otel.stack import Binary, PodTarget, Stack, StackError, binaries, running_stack

StackFactory = Callable[..., Stack]


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

        def start(targets: Sequence[PodTarget] = (), span_file: Path | None = None) -> Stack:
            return running.enter_context(
                running_stack(directories(), targets, span_file=span_file, paths=paths)
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
