"""The client's side of `ec2-terminal.v1`: server frames read, client frames built."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.errors import ProtocolViolation
from app.terminal.protocol import (
    MAX_CLIENT_FRAME,
    FrameType,
    decode_output,
    encode,
    encode_json,
)
from app.terminal.types import Size

SERVER_FRAMES = frozenset(
    {
        FrameType.OUTPUT,
        FrameType.STATUS,
        FrameType.EXIT,
        FrameType.ERROR,
        FrameType.PING,
        FrameType.PONG,
    }
)


@dataclass(frozen=True)
class ServerFrame:
    """A frame from the server: its type, and its offset and bytes or its JSON body."""

    type: FrameType
    data: bytes = b""
    offset: int = 0
    body: dict[str, Any] | None = None


def decode_server(message: bytes) -> ServerFrame:
    """Read one server frame, refusing what the protocol does not allow."""
    if not message:
        raise ProtocolViolation("empty frame from the server")
    try:
        kind = FrameType(message[0])
    except ValueError:
        raise ProtocolViolation(f"unknown frame type 0x{message[0]:02x} from the server") from None
    if kind not in SERVER_FRAMES:
        raise ProtocolViolation(f"the server sent a client frame ({kind.name})")
    payload = message[1:]
    if kind is FrameType.OUTPUT:
        offset, data = decode_output(payload)
        return ServerFrame(kind, data, offset)
    if kind in (FrameType.PING, FrameType.PONG):
        return ServerFrame(kind, payload)
    try:
        body = json.loads(payload)
    except ValueError:
        raise ProtocolViolation(f"{kind.name} from the server is not JSON") from None
    if not isinstance(body, dict):
        raise ProtocolViolation(f"{kind.name} from the server is not a JSON object")
    return ServerFrame(kind, body=body)


def encode_hello(
    size: Size,
    resume: tuple[str, int] | None = None,
    view: tuple[str, int | None] | None = None,
) -> bytes:
    """HELLO: the size, and the session to resume or (id, offset or None) to watch."""
    body: dict[str, Any] = {"cols": size.cols, "rows": size.rows}
    if resume is not None:
        body["resume"] = {"id": resume[0], "offset": resume[1]}
    elif view is not None:
        body["view"] = {"id": view[0]} if view[1] is None else {"id": view[0], "offset": view[1]}
    return encode_json(FrameType.HELLO, body)


def encode_input(data: bytes) -> list[bytes]:
    """INPUT frames for `data`, none over the server's frame limit."""
    step = MAX_CLIENT_FRAME - 1
    return [encode(FrameType.INPUT, data[i : i + step]) for i in range(0, len(data), step)]
