"""Frames of the `ec2-terminal.v1` WebSocket protocol: types, encoding, decoding and limits."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any, NamedTuple

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
    VIEWING = "viewing"
    UPDATE = "update"
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
class View:
    """A request to watch a shared session read-only, from `offset` (None: all that is kept)."""

    view_id: str
    offset: int | None = None


@dataclass(frozen=True)
class Hello:
    """The client's first frame."""

    size: Size
    resume: Resume | None = None
    view: View | None = None


class Frame(NamedTuple):
    """A decoded client frame (a tuple: made once per keystroke, it must cost little)."""

    type: FrameType
    payload: bytes


# By first byte: a dict lookup per frame instead of an Enum call and a set test.
_CLIENT_FRAME_TYPES = {frame_type.value: frame_type for frame_type in CLIENT_FRAMES}


def decode(data: bytes) -> Frame:
    """Split a client frame into its type and payload, refusing what the protocol forbids."""
    if len(data) > MAX_CLIENT_FRAME:
        raise FrameTooLarge(f"frame of {len(data)} bytes exceeds the limit of {MAX_CLIENT_FRAME}")
    if not data:
        raise ProtocolViolation("empty frame")
    frame_type = _CLIENT_FRAME_TYPES.get(data[0])
    if frame_type is None:
        try:
            server_type = FrameType(data[0])
        except ValueError:
            raise ProtocolViolation(f"unknown frame type 0x{data[0]:02x}") from None
        raise ProtocolViolation(f"frame type {server_type.name} is sent by the server only")
    return Frame(frame_type, data[1:])


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


def _check_id(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not 0 < len(raw) <= MAX_SESSION_ID:
        raise ProtocolViolation(f"HELLO {what} must be a session id")
    return raw


def _check_offset(raw: Any, what: str) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not 0 <= raw <= MAX_OFFSET:
        raise ProtocolViolation(f"HELLO {what} must be a non-negative integer")
    return raw


def _object(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    raw = body.get(key)
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ProtocolViolation(f"HELLO {key} must be an object")
    return raw


def parse_hello(payload: bytes) -> Hello:
    """Read HELLO's JSON: size, and optionally the session to resume or to watch."""
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
    raw_resume, raw_view = _object(body, "resume"), _object(body, "view")
    if raw_resume is not None and raw_view is not None:
        raise ProtocolViolation("HELLO may carry resume or view, not both")
    if raw_resume is not None:
        resume = Resume(
            _check_id(raw_resume.get("id"), "resume.id"),
            _check_offset(raw_resume.get("offset"), "resume.offset"),
        )
        return Hello(size, resume=resume)
    if raw_view is not None:
        offset = raw_view.get("offset")
        view = View(
            _check_id(raw_view.get("id"), "view.id"),
            None if offset is None else _check_offset(offset, "view.offset"),
        )
        return Hello(size, view=view)
    return Hello(size)


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
