"""Frames of the `ec2-terminal.v1` WebSocket protocol: types, encoding, decoding and limits."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from app.errors import FrameTooLarge, ProtocolViolation
from app.terminal.types import Size

SUBPROTOCOL = "ec2-terminal.v1"
MAX_CLIENT_FRAME = 64 * 1024
# What the WebSocket layer reads of one message at all: a larger one is refused while it
# arrives, so it is never buffered whole (a frame between the two gets an ERROR first).
MAX_WEBSOCKET_MESSAGE = 4 * MAX_CLIENT_FRAME
MAX_OUTPUT_CHUNK = 64 * 1024
MAX_TERMINAL_SIDE = 1000
MAX_OFFSET = 2**64 - 1
# A real HELLO is under 200 bytes; the bound keeps hostile JSON (deep nesting, huge numbers)
# far below what could exhaust the parser.
MAX_HELLO = 1024
MAX_SESSION_ID = 128

_U16_PAIR = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_OUTPUT_HEADER = struct.Struct(">BQ")


class FrameType(IntEnum):
    """The first byte of every frame."""

    INPUT = 0x00
    RESIZE = 0x01
    ACK = 0x02
    PING = 0x03
    PONG = 0x04
    HELLO = 0x05
    OUTPUT = 0x80
    STATUS = 0x81
    EXIT = 0x82
    ERROR = 0x83


class ConnectionState(StrEnum):
    """STATUS's `state`: where the connection stands with its session."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RESUMED = "resumed"
    CLOSED = "closed"


CLIENT_FRAMES = frozenset(
    {
        FrameType.INPUT,
        FrameType.RESIZE,
        FrameType.ACK,
        FrameType.PING,
        FrameType.PONG,
        FrameType.HELLO,
    }
)


@dataclass(frozen=True)
class Resume:
    """A request to reattach to a session and replay its output from `offset`."""

    session_id: str
    offset: int


@dataclass(frozen=True)
class Hello:
    """The client's first frame."""

    size: Size
    resume: Resume | None = None


@dataclass(frozen=True)
class Frame:
    """A decoded client frame."""

    type: FrameType
    payload: bytes


def decode(data: bytes) -> Frame:
    """Split a client frame into its type and payload, refusing what the protocol forbids."""
    if len(data) > MAX_CLIENT_FRAME:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the limit of {MAX_CLIENT_FRAME}")
    if not data:
        raise ProtocolViolation("empty frame")
    try:
        frame_type = FrameType(data[0])
    except ValueError:
        raise ProtocolViolation(f"unknown frame type 0x{data[0]:02x}") from None
    if frame_type not in CLIENT_FRAMES:
        raise ProtocolViolation(f"frame type {frame_type.name} is sent by the server only")
    return Frame(frame_type, bytes(data[1:]))


def _check_size(cols: Any, rows: Any) -> Size:
    valid = all(
        isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_TERMINAL_SIDE
        for v in (cols, rows)
    )
    if not valid:
        raise ProtocolViolation(f"terminal size must be 1..{MAX_TERMINAL_SIDE} columns and rows")
    return Size(cols, rows)


def parse_resize(payload: bytes) -> Size:
    """Read RESIZE's cols and rows."""
    if len(payload) != _U16_PAIR.size:
        raise ProtocolViolation("RESIZE payload must be 4 bytes")
    return _check_size(*_U16_PAIR.unpack(payload))


def parse_ack(payload: bytes) -> int:
    """Read ACK's total of rendered output bytes."""
    if len(payload) != _U64.size:
        raise ProtocolViolation("ACK payload must be 8 bytes")
    offset: int = _U64.unpack(payload)[0]
    return offset


def parse_hello(payload: bytes) -> Hello:
    """Read HELLO's JSON: size, and optionally the session to resume."""
    if len(payload) > MAX_HELLO:
        raise ProtocolViolation(f"HELLO payload exceeds {MAX_HELLO} bytes")
    try:
        body = json.loads(payload)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad JSON and integers beyond Python's digit limit.
        raise ProtocolViolation("HELLO payload is not valid JSON") from None
    if not isinstance(body, dict):
        raise ProtocolViolation("HELLO payload must be a JSON object")
    size = _check_size(body.get("cols"), body.get("rows"))
    raw_resume = body.get("resume")
    if raw_resume is None:
        return Hello(size)
    if not isinstance(raw_resume, dict):
        raise ProtocolViolation("HELLO resume must be an object")
    session_id, offset = raw_resume.get("id"), raw_resume.get("offset")
    if not isinstance(session_id, str) or not 0 < len(session_id) <= MAX_SESSION_ID:
        raise ProtocolViolation("HELLO resume.id must be a session id")
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise ProtocolViolation("HELLO resume.offset must be a non-negative integer")
    return Hello(size, Resume(session_id, offset))


def encode(frame_type: FrameType, payload: bytes = b"") -> bytes:
    """Build a frame from its type and payload."""
    return bytes((frame_type,)) + payload


def encode_json(frame_type: FrameType, body: dict[str, Any]) -> bytes:
    """Build a frame whose payload is compact JSON."""
    return encode(frame_type, json.dumps(body, separators=(",", ":")).encode())


def encode_output(offset: int, data: bytes) -> bytes:
    """Build an OUTPUT frame for `data`, whose first byte has absolute offset `offset`."""
    return _OUTPUT_HEADER.pack(FrameType.OUTPUT, offset) + data


def encode_resize(size: Size) -> bytes:
    """Build a RESIZE frame (used by clients and tests)."""
    return encode(FrameType.RESIZE, _U16_PAIR.pack(size.cols, size.rows))


def encode_ack(offset: int) -> bytes:
    """Build an ACK frame (used by clients and tests)."""
    return encode(FrameType.ACK, _U64.pack(offset))


def decode_output(payload: bytes) -> tuple[int, bytes]:
    """Split an OUTPUT payload into its offset and bytes (used by clients and tests)."""
    if len(payload) < _U64.size:
        raise ProtocolViolation("OUTPUT payload must start with an 8-byte offset")
    return _U64.unpack_from(payload)[0], payload[_U64.size :]
