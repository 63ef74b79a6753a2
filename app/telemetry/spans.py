"""Spans for our own code: the `traced` decorator and a few helpers, free when tracing is off.

Importing OpenTelemetry's API costs about a tenth of a second, so nothing here imports it.
Each call looks the API up in `sys.modules` instead: if no module has imported it, no tracer
provider can have been set, tracing is certainly off, and the call goes straight through.
`app.telemetry.setup` imports it only when tracing is on.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar, overload

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)
AttributeValue = str | int | float | bool
_API = "opentelemetry.trace"


def _api() -> ModuleType | None:
    """OpenTelemetry's trace API if something has loaded it, else None (tracing is off)."""
    return sys.modules.get(_API)


class _LazyTracer:
    """A tracer fetched on first use once the API is loaded, then kept."""

    def __init__(self, scope: str) -> None:
        self._scope = scope
        self._tracer: Any = None

    def get(self) -> Any:
        if self._tracer is None:
            api = _api()
            if api is None:
                return None
            # A ProxyTracer until a provider is set, then the provider's: safe to keep.
            self._tracer = api.get_tracer(self._scope)
        return self._tracer


def _wrap(function: F, name: str) -> F:
    tracer = _LazyTracer(function.__module__)
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            active = tracer.get()
            if active is None:
                return await function(*args, **kwargs)
            with active.start_as_current_span(name):
                return await function(*args, **kwargs)

        return run_async  # type: ignore[return-value]

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        active = tracer.get()
        if active is None:
            return function(*args, **kwargs)
        # start_as_current_span records an exception and sets the ERROR status by default.
        with active.start_as_current_span(name):
            return function(*args, **kwargs)

    return run  # type: ignore[return-value]


def _wrap_class(cls: C, prefix: str) -> C:
    """Traces the public methods `cls` defines itself (not inherited ones, not properties)."""
    for attr, value in list(vars(cls).items()):
        if attr.startswith("_"):
            continue
        if isinstance(value, staticmethod | classmethod):
            inner = value.__func__
            setattr(cls, attr, type(value)(_wrap(inner, f"{prefix}.{attr}")))
        elif inspect.isfunction(value):
            setattr(cls, attr, _wrap(value, f"{prefix}.{attr}"))
    return cls


@overload
def traced(target: F) -> F: ...


@overload
def traced(target: str | None = None) -> Callable[[F], F]: ...


def traced(target: Any = None) -> Any:
    """A span around each call of a function, coroutine function, or every public method.

    `@traced` names the span after the function's qualified name (or `Class.method`);
    `@traced("ssh.connect")` names it. An exception is recorded on the span, which gets the
    ERROR status, and raised on unchanged.
    """

    def decorate(subject: Any, name: str | None) -> Any:
        if inspect.isclass(subject):
            return _wrap_class(subject, name or subject.__qualname__)
        return _wrap(subject, name or subject.__qualname__)

    if isinstance(target, str) or target is None:
        return lambda subject: decorate(subject, target)
    return decorate(target, None)


def current_trace_id() -> str | None:
    """The 32-hex-digit id of the trace being recorded now, or None."""
    api = _api()
    if api is None:
        return None
    context = api.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return format(context.trace_id, "032x")


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Sets attributes on the current span, if one is being recorded."""
    api = _api()
    if api is not None:
        api.get_current_span().set_attributes(attributes)


def record_span(
    name: str,
    start_ns: int,
    end_ns: int,
    attributes: Mapping[str, AttributeValue],
    error: BaseException | None = None,
) -> None:
    """A child of the current span for something that ran between two past instants."""
    api = _api()
    if api is None:
        return
    span = api.get_tracer(__name__).start_span(name, start_time=start_ns, attributes=attributes)
    if error is not None:
        span.record_exception(error)
        span.set_status(api.Status(api.StatusCode.ERROR, type(error).__name__))
    span.end(end_time=end_ns)


@contextmanager
def span(name: str, attributes: Mapping[str, AttributeValue] | None = None) -> Iterator[None]:
    """A span around a block (a root span when none is current)."""
    api = _api()
    if api is None:
        yield
        return
    with api.get_tracer(__name__).start_as_current_span(name, attributes=attributes):
        yield
