"""What a connection reports about its life, for whoever watches (tracing); never per frame."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from enum import StrEnum
from typing import Protocol

EventValue = str | int | bool


class ConnectionEvent(StrEnum):
    """The moments of a connection's life worth recording."""

    CONNECT = "connect"  # a new session is open
    RESUME = "resume"  # an existing session was resumed
    RESIZE = "resize"
    TAKEOVER = "takeover"  # another connection resumed this one's session
    EXIT = "exit"  # the session ended and the client was told
    ERROR = "error"  # an ERROR frame was sent


class ConnectionObserver(Protocol):
    """Told of each event; must not block (it runs on the connection's task)."""

    def event(self, event: ConnectionEvent, attributes: Mapping[str, EventValue]) -> None:
        """Something happened on the connection."""


class NoObserver:
    """The default: nobody watches."""

    def event(self, event: ConnectionEvent, attributes: Mapping[str, EventValue]) -> None:
        """Ignores the event."""


def session_ref(session_id: str) -> str:
    """A stable name for a session that does not let its holder resume it (the id would)."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:16]
