"""Redis spans enriched as the prototype did: the command, its key, and the code that called it.

opentelemetry-instrumentation-redis already writes `db.statement` with every argument
replaced by `?` and `db.redis.args_length`; these hooks add `db.operation`, `db.redis.key`
(never for commands whose arguments are not keys, such as AUTH) and `code.function`,
`code.namespace`, `code.filepath`, `code.lineno` of the first caller outside Redis, Celery,
kombu, OpenTelemetry and the standard library.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Sequence
from types import FrameType, ModuleType
from typing import Any

# Commands whose first argument is not a key; some carry a password (AUTH, HELLO ... AUTH).
NOT_KEYS = frozenset(
    {
        "ACL",
        "AUTH",
        "CLIENT",
        "CLUSTER",
        "COMMAND",
        "CONFIG",
        "DEBUG",
        "ECHO",
        "FUNCTION",
        "HELLO",
        "INFO",
        "MIGRATE",
        "MODULE",
        "PING",
        "PUBLISH",
        "SCRIPT",
        "SELECT",
        "SUBSCRIBE",
        "PSUBSCRIBE",
    }
)
# Commands whose keys follow the script and their count: EVALSHA sha numkeys key ...
SCRIPTS = frozenset({"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO", "FCALL", "FCALL_RO"})
MAX_KEY = 256


def _directory(module: ModuleType) -> str:
    path = module.__file__ or ""
    return os.path.dirname(path) + os.sep


def library_prefixes(extra: Sequence[ModuleType] = ()) -> tuple[str, ...]:
    """Directories whose frames are never "the caller"."""
    import billiard
    import celery
    import kombu
    import opentelemetry.trace
    import redis
    import vine

    otel = os.path.dirname(os.path.dirname(opentelemetry.trace.__file__ or "")) + os.sep
    stdlib = sysconfig.get_paths()["stdlib"] + os.sep
    modules = (redis, kombu, celery, billiard, vine, *extra)
    return (otel, stdlib, os.path.dirname(__file__) + os.sep, *map(_directory, modules))


def caller(prefixes: tuple[str, ...], frame: FrameType | None) -> FrameType | None:
    """The first frame, from `frame` outwards, whose file is under none of `prefixes`."""
    while frame is not None:
        if not frame.f_code.co_filename.startswith(prefixes):
            return frame
        frame = frame.f_back
    return None


def key_of(args: Sequence[Any]) -> str | None:
    """The key a command works on, or None when it names none (or its arguments are secret)."""
    if not args:
        return None
    command = str(args[0]).upper()
    if command in NOT_KEYS:
        return None
    position = 1
    if command in SCRIPTS:
        try:
            if int(args[2]) < 1:
                return None
        except (IndexError, ValueError, TypeError):
            return None
        position = 3
    if len(args) <= position:
        return None
    key = args[position]
    text = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
    return text[:MAX_KEY]


class RedisHooks:
    """The request and response hooks RedisInstrumentor calls around each command."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        self._prefixes = prefixes

    def _code(self, span: Any) -> None:
        found = caller(self._prefixes, sys._getframe(1))
        if found is not None:
            span.set_attributes(
                {
                    "code.function": found.f_code.co_qualname,
                    "code.namespace": str(found.f_globals.get("__name__", "")),
                    "code.filepath": found.f_code.co_filename,
                    "code.lineno": found.f_lineno,
                }
            )

    def request(self, span: Any, instance: Any, args: Sequence[Any], kwargs: Any) -> None:
        """Before a command: what it is, its key and who asked."""
        if not span.is_recording() or not args:
            return
        span.set_attribute("db.operation", str(args[0]).upper())
        key = key_of(args)
        if key is not None:
            span.set_attribute("db.redis.key", key)
        self._code(span)

    def response(self, span: Any, instance: Any, response: Any) -> None:
        """After a pipeline (which has no request hook): who sent it."""
        if span.is_recording() and hasattr(instance, "command_stack"):
            self._code(span)
