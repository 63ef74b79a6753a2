"""WebSocket close codes by name (RFC 6455 section 7.4 and the IANA registry)."""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    """Close codes the server sends: its own, and those of the WebSocket layer under it."""

    NORMAL = 1000
    # Sent by the WebSocket layer (websockets under uvicorn) for a broken frame.
    PROTOCOL_ERROR = 1002
    # Sent by the WebSocket layer for a text frame that is not UTF-8.
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    # Sent by uvicorn to sockets still open when it stops.
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
