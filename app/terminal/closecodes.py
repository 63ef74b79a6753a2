"""WebSocket close codes by name (RFC 6455 section 7.4 and the IANA registry)."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Close codes the server sends."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
