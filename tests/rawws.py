"""A WebSocket client on a bare asyncio stream, for what well-behaved libraries never do:
stop reading, leave pings unanswered, send broken frames or cut a frame's header short."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import os
import socket
import struct
from dataclasses import dataclass, field

from app.terminal.protocol import SUBPROTOCOL, FrameType, encode_json


class Opcode(enum.IntEnum):
    """RFC 6455 frame opcodes."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


def frame_bytes(
    opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True, rsv: int = 0
) -> bytes:
    """One client frame as it goes on the wire (masked, as RFC 6455 requires of clients)."""
    head = bytes([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    mask_bit = 0x80 if masked else 0
    n = len(payload)
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([mask_bit | 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    # XOR with the repeated key through int arithmetic: fast enough for megabytes.
    stream = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")
    return head + key + body


@dataclass
class RawWebSocket:
    """An upgraded connection to the terminal server, driven frame by frame."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    status: int
    closes: list[tuple[int, str]] = field(default_factory=list)
    session_id: str = ""

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/ws",
        headers: dict[str, str] | None = None,
        receive_buffer: int | None = None,
    ) -> RawWebSocket:
        """Upgrade a new TCP connection; `receive_buffer` shrinks the kernel's buffer first."""
        sock = socket.socket()
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        # A small stream limit: an unread stream stops reading the socket early.
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = {
            "Host": f"127.0.0.1:{port}",
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Protocol": SUBPROTOCOL,
            **(headers or {}),
        }
        request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in lines.items())
        writer.write(request.encode() + b"\r\n")
        response = await reader.readuntil(b"\r\n\r\n")
        status = int(response.split(b" ", 2)[1])
        return cls(reader, writer, status)

    def send(self, opcode: int, payload: bytes = b"", **kwargs: bool | int) -> None:
        """Queue one frame (see frame_bytes for the options)."""
        self.writer.write(frame_bytes(opcode, payload, **kwargs))  # type: ignore[arg-type]

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def flush(self) -> None:
        await self.writer.drain()

    async def read_frame(self) -> tuple[int, bytes]:
        """The next server frame, unanswered: (opcode, payload). A CLOSE is also noted."""
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack(">H", await self.reader.readexactly(2))[0]
        elif length == 127:
            length = struct.unpack(">Q", await self.reader.readexactly(8))[0]
        payload = await self.reader.readexactly(length)
        opcode = first & 0xF
        if opcode == Opcode.CLOSE:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            self.closes.append((code, payload[2:].decode(errors="replace")))
        return opcode, payload

    async def read_until_closed(self, timeout: float) -> list[tuple[int, bytes]]:
        """Read every frame until the server ends the connection (EOF); never answers pings."""
        frames: list[tuple[int, bytes]] = []
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frames.append(await self.read_frame())
                except (asyncio.IncompleteReadError, ConnectionError):
                    return frames

    def abort(self) -> None:
        """Drop the TCP connection without a close frame."""
        self.writer.transport.abort()


async def raw_session(port: int, token: str, receive_buffer: int | None = None) -> RawWebSocket:
    """A raw connection with a new session, read up to its STATUS `connected`."""
    raw = await RawWebSocket.connect(
        port, headers={"Authorization": f"Bearer {token}"}, receive_buffer=receive_buffer
    )
    assert raw.status == 101
    raw.send(Opcode.BINARY, encode_json(FrameType.HELLO, {"cols": 80, "rows": 24}))
    while True:
        opcode, payload = await raw.read_frame()
        if opcode == Opcode.BINARY and payload[0] == FrameType.STATUS:
            status = json.loads(payload[1:])
            if status["state"] == "connected":
                raw.session_id = status["session_id"]
                return raw
