"""uvicorn's connection protocols, with what this server needs on top of them."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from app.terminal.closecodes import CloseCode

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 36\r\nconnection: close\r\n\r\nThe request headers came too slowly.\n"
)
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 33\r\nconnection: close\r\n\r\nThe request headers are too large.\n"
)
# A request's headers, in bytes: far above any real request (the login cookie is 60 bytes),
# far below what a flood of header bytes within the header timeout would make the server hold.
MAX_HEADER_BYTES = 64 * 1024
# How long a connection closed for a protocol error may go on sending before it is cut.
LINGER_SECONDS = 5.0
_OVER_CAPACITY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 40\r\nretry-after: 5\r\nconnection: close\r\n\r\n"
    b"Too many connections: try again shortly.\n"
)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on request headers and a connection cap.

    uvicorn has no header-read timeout (a connection may send one header byte a minute for
    ever), and its `limit_concurrency` is checked only once headers are complete, so silent
    connections never meet it. Here every request's headers must arrive within
    `header_timeout` seconds of its first byte (of the connection, for the first request),
    and a connection beyond `limit_concurrency` is answered 503 and closed at once, freeing
    its descriptor. Headers larger than MAX_HEADER_BYTES are answered 431 and closed: the
    parser itself has no limit, so a request could otherwise grow without bound for as long
    as the header deadline allows.
    """

    header_timeout: float = 10.0
    _header_deadline: asyncio.TimerHandle | None = None
    # Bytes of the current request's headers so far, and the last three (a CRLFCRLF that
    # straddles two reads).
    _header_bytes: int = 0
    _header_tail: bytes = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) > limit:
            log.warning("refused a connection: the limit of %d is reached", limit)
            transport.write(_OVER_CAPACITY)
            transport.close()
            return
        self._await_headers()

    def _await_headers(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _headers_arrived(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        self._header_bytes, self._header_tail = 0, b""

    def data_received(self, data: bytes) -> None:
        if self._header_deadline is not None and not self._headers_fit(data):
            log.info("refused a request whose headers exceed %d bytes", MAX_HEADER_BYTES)
            self._headers_arrived()
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            return
        super().data_received(data)

    def _headers_fit(self, data: bytes) -> bool:
        """Whether the headers, with `data`, stay within MAX_HEADER_BYTES or end in time."""
        room = MAX_HEADER_BYTES - self._header_bytes
        seen = self._header_tail + data
        self._header_bytes += len(data)
        self._header_tail = seen[-3:]
        return len(data) <= room or b"\r\n\r\n" in seen[: len(seen) - len(data) + room]

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection whose headers took over %g s", self.header_timeout)
            self.transport.write(_REQUEST_TIMEOUT)
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._await_headers()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._headers_arrived()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_arrived()
        super().connection_lost(exc)


def http_protocol(header_timeout: float) -> type[HttpProtocol]:
    """HttpProtocol with this header deadline (uvicorn builds protocols from a class alone)."""

    class Configured(HttpProtocol):
        pass

    Configured.header_timeout = header_timeout
    return Configured


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol, quiet about handshakes and frames, and plain
    about why its keepalive cut a socket.

    At debug level the websockets library logs every handshake header (the login cookie) and
    a hex dump of every frame (keystrokes and terminal output); this protocol never does. Its
    "connection open" line goes to the library's own logger, which is quiet at the default
    level (app.logs), instead of uvicorn's.
    """

    _lingering = False

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn.debug = False
        self.conn.logger = logging.getLogger("websockets.server")

    def keepalive_timeout(self) -> None:
        """A ping went unanswered: close with a reason, tell the app why, and never linger;
        unless the socket is unread because the app is behind.

        uvicorn closes with a bare "keepalive ping timeout" and the app hears only that the
        connection was lost. A client that stopped reading never drains what was sent to it,
        so the transport is aborted if it has not closed within another timeout.
        """
        self.pong_timer = None
        if self.close_sent or self.transport.is_closing():
            self.pending_ping_payload = None
            return
        if self.read_paused:
            # The app has not taken the last message (its input backlog is full while the
            # target reads nothing), so the pong may be in the socket, unread: that is our
            # stall, not the client's. Cutting would lose the input behind it; wait again.
            self.pong_timer = self.loop.call_later(self.ping_timeout or 0.0, self.keepalive_timeout)
            return
        self.pending_ping_payload = None
        reason = f"no answer to the keepalive ping within {self.ping_timeout:g} s"
        # Ahead of the bare disconnect connection_lost queues: the app reads this one first.
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": CloseCode.INTERNAL_ERROR, "reason": reason}
        )
        self.conn.fail(CloseCode.INTERNAL_ERROR, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
        self.loop.call_later(self.ping_timeout or 0.0, self.transport.abort)

    def handle_parser_exception(self) -> None:
        """A frame broke the protocol or the size limit: close with the code and reason, then
        linger, reading and dropping what still arrives.

        uvicorn closes the socket at once, while the client is typically still sending the
        message it was refused (a 50 MiB paste); closing a socket with unread bytes makes the
        kernel reset the connection, and the client then loses the close frame that said why
        (1009 and the limit) and sees 1006. Instead the write side is shut after the close
        frame and the rest is discarded as it comes, until the client closes or LINGER_SECONDS
        pass: nothing is buffered, so memory stays flat.
        """
        assert self.conn.close_sent is not None
        close = self.conn.close_sent
        self.queue.put_nowait(
            {"type": "websocket.disconnect", "code": close.code, "reason": close.reason}
        )
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.close_timer = self.loop.call_later(LINGER_SECONDS, self.transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a refused message: dropped unread by the protocol
        super().data_received(data)

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # uvicorn writes the denial response but never marks the handshake as done, so it
            # logs "ASGI callable returned without completing handshake" at ERROR for every
            # refused upgrade (its wsproto protocol does mark it; uvicorn PR #3138).
            self.handshake_complete = True
