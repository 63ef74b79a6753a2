"""A small `ec2-terminal.v1` client for tests and benchmarks, on the `websockets` library."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

from app.terminal.protocol import (
    SUBPROTOCOL,
    FrameType,
    decode_output,
    encode,
    encode_ack,
    encode_json,
    encode_resize,
)
from app.terminal.types import Size


@dataclass
class TerminalClient:
    """Collects output in order and waits for text; ACKs what it reads unless told not to."""

    ws: ClientConnection
    auto_ack: bool = True
    output: bytearray = field(default_factory=bytearray)
    offset: int = 0
    statuses: list[dict[str, Any]] = field(default_factory=list)
    exit: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    pongs: list[bytes] = field(default_factory=list)
    digest: Any = field(default_factory=hashlib.sha256)
    keep_output: bool = True
    last_chunk: bytes = b""

    @property
    def session_id(self) -> str:
        return str(self.statuses[-1]["session_id"])

    async def hello(
        self, cols: int = 80, rows: int = 24, resume: tuple[str, int] | None = None
    ) -> None:
        body: dict[str, Any] = {"cols": cols, "rows": rows}
        if resume:
            body["resume"] = {"id": resume[0], "offset": resume[1]}
        await self.ws.send(encode_json(FrameType.HELLO, body))

    async def send_input(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        await self.ws.send(encode(FrameType.INPUT, data))

    async def resize(self, cols: int, rows: int) -> None:
        await self.ws.send(encode_resize(Size(cols, rows)))

    async def ack(self, offset: int | None = None) -> None:
        await self.ws.send(encode_ack(self.offset if offset is None else offset))

    async def receive_one(self) -> FrameType:
        """Read one frame and file it; returns its type."""
        raw = await self.ws.recv()
        assert isinstance(raw, bytes), "server sent a text frame"
        kind, payload = FrameType(raw[0]), raw[1:]
        if kind is FrameType.OUTPUT:
            offset, data = decode_output(payload)
            assert offset == self.offset, (
                f"gap or overlap: got offset {offset}, expected {self.offset}"
            )
            self.offset += len(data)
            self.last_chunk = data
            self.digest.update(data)
            if self.keep_output:
                self.output += data
            if self.auto_ack:
                # The server may have sent EXIT and closed already; a late ACK is moot.
                with contextlib.suppress(ConnectionClosed):
                    await self.ack()
        elif kind is FrameType.STATUS:
            self.statuses.append(json.loads(payload))
        elif kind is FrameType.EXIT:
            self.exit = json.loads(payload)
        elif kind is FrameType.ERROR:
            self.error = json.loads(payload)
        elif kind is FrameType.PONG:
            self.pongs.append(payload)
        return kind

    async def until(self, predicate: Callable[[TerminalClient], bool], timeout: float = 15) -> None:
        """Read frames until `predicate(self)` holds."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await self.receive_one()

    async def until_connected(self) -> None:
        """Read frames until the STATUS that says the new session's SSH connection is up."""
        await self.until(lambda c: any(s["state"] == "connected" for s in c.statuses))

    async def until_text(self, text: str, timeout: float = 15) -> None:
        await self.until(lambda c: text.encode() in c.output, timeout)

    async def until_closed(self, timeout: float = 15) -> None:
        """Read frames until the server closes the socket."""
        try:
            await self.until(lambda c: False, timeout)
        except ConnectionClosed:
            return

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")


def ws_url(base_url: str) -> str:
    return base_url.replace("http", "ws", 1).rstrip("/") + "/ws"


async def open_client(
    base_url: str,
    token: str | None,
    origin: str | None = None,
    **kwargs: Any,
) -> TerminalClient:
    """Connect with a Bearer token (None: no credentials) and the protocol's subprotocol."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws = await connect(
        ws_url(base_url),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        max_size=None,
        compression=None,
        open_timeout=10,
    )
    return TerminalClient(ws, **kwargs)


async def connected(
    server: RunningServer, cols: int = 80, rows: int = 24, **kwargs: Any
) -> TerminalClient:
    """A client of `server` with a new session of its own, connected (kwargs: TerminalClient's)."""
    client = await open_client(server.base_url, server.token, **kwargs)
    await client.hello(cols, rows)
    await client.until_connected()
    return client


async def connected_with_cookie(server: RunningServer, cookie: str) -> TerminalClient:
    """A client with a new session, opened as the page opens it: login cookie and Origin."""
    ws = await connect(
        ws_url(server.base_url),
        subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
        additional_headers={"Cookie": cookie},
        origin=server.origin,  # type: ignore[arg-type]
    )
    client = TerminalClient(ws)
    await client.hello()
    await client.until_connected()
    return client
