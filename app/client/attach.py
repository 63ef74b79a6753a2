"""Attach a local terminal to a session: HELLO, output and ACKs, keys, resizes, PING, resume."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from app.client.frames import ServerFrame, decode_server, encode_hello, encode_input
from app.client.keys import HELP, Escape, KeyFilter
from app.client.local import LocalTerminal
from app.errors import ConfigurationError, ProtocolViolation
from app.terminal.closecodes import CloseCode
from app.terminal.protocol import (
    MAX_SESSION_ID,
    SUBPROTOCOL,
    FrameType,
    encode,
    encode_ack,
    encode_resize,
)

# What a failure of the client itself exits with (as ssh does); a remote status is passed on.
FAILED = 255
# Attributes off, cursor home, screen erased: before a viewer's fresh replay.
CLEAR_SCREEN = b"\x1b[0m\x1b[H\x1b[2J"
# Close codes after which reconnecting cannot help (as the page treats them).
FINAL_CLOSES = frozenset(
    {
        CloseCode.NORMAL,
        CloseCode.PROTOCOL_ERROR,
        CloseCode.INVALID_PAYLOAD,
        CloseCode.POLICY_VIOLATION,
        CloseCode.MESSAGE_TOO_BIG,
    }
)


@dataclass(frozen=True)
class Endpoint:
    """Where to attach: the WebSocket URL, the access token, and a view id to watch with."""

    url: str
    token: str = field(repr=False)
    view_id: str | None = None


def endpoint_for(page_url: str, token: str, view_id: str | None = None) -> Endpoint:
    """The WebSocket beside a terminal page (`P` + `ws`); `#view=<id>` in the URL watches."""
    parts = urlsplit(page_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{page_url!r} is not the http:// or https:// address of a terminal"
        )
    fragment = parse_qs(parts.fragment)
    if "token" in fragment or "token" in parse_qs(parts.query):
        raise ConfigurationError(
            "that address holds a link token, which is for a browser: give this command the "
            "access token with --token-file or EC2_TERMINAL_TOKEN, and the address without it"
        )
    view_id = view_id or next(iter(fragment.get("view", [])), None)
    if view_id is not None and not 0 < len(view_id) <= MAX_SESSION_ID:
        raise ConfigurationError("the view id is not one this server hands out")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    scheme = "wss" if parts.scheme == "https" else "ws"
    return Endpoint(urlunsplit((scheme, parts.netloc, path + "ws", "", "")), token, view_id)


def share_link(endpoint: Endpoint, view_id: str) -> str:
    """The page's read-only Share link for `view_id`, as the page itself makes it."""
    parts = urlsplit(endpoint.url)
    scheme = "https" if parts.scheme == "wss" else "http"
    page = parts.path.removesuffix("ws")
    return urlunsplit((scheme, parts.netloc, page, "", "view=" + quote(view_id, safe="")))


Connector = Callable[[Endpoint], AbstractAsyncContextManager[ClientConnection]]


def open_websocket(endpoint: Endpoint) -> AbstractAsyncContextManager[ClientConnection]:
    """The `ec2-terminal.v1` WebSocket with a bearer token and no Origin (not a browser)."""
    return connect(
        endpoint.url,
        subprotocols=[Subprotocol(SUBPROTOCOL)],
        additional_headers={"Authorization": f"Bearer {endpoint.token}"},
        user_agent_header="ec2-terminal-attach",
        open_timeout=15,
        close_timeout=2,
        ping_interval=None,  # the protocol's own PING keeps the connection alive
        max_size=1024 * 1024,
        compression=None,
    )


@dataclass(frozen=True)
class Timing:
    """The client's clocks: keepalive and reconnect backoff, in seconds."""

    ping_interval: float = 15.0
    pong_timeout: float = 20.0
    first_backoff: float = 0.5
    max_backoff: float = 10.0
    # Without a session yet: give up after this many attempts that never opened.
    max_failed_opens: int = 5
    # With a session: give up when it has been out of reach this long (the server's grace
    # period usually ends it first, and says so).
    give_up_after: float = 300.0


class _Dropped(Exception):
    """The connection is gone but the session may not be: connect again."""


class _Done(Exception):
    """Nothing more to do: exit with `status` (after telling the user `message`, if any)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def exit_status(status: object) -> int:
    """A remote exit status as this process's own (out of 0..255, or none: FAILED)."""
    if isinstance(status, int) and not isinstance(status, bool) and 0 <= status <= 255:
        return status
    return FAILED


class Attacher:
    """Attaches `local` to a new session (or watches a shared one) until it ends."""

    def __init__(
        self,
        endpoint: Endpoint,
        local: LocalTerminal,
        connector: Connector = open_websocket,
        timing: Timing | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.local = local
        self.connector = connector
        self.timing = timing or Timing()
        self.viewing = endpoint.view_id is not None
        self.session_id: str | None = None
        self.view_id: str | None = None  # the owner's, to share (None: sharing is off)
        self.joined = False  # a viewer has joined: joining again continues from `received`
        self.received = 0
        self._outbox: deque[bytes] = deque()
        self._outbox_ready = asyncio.Event()
        self._leave = asyncio.Event()
        self._leave_status = 0
        # Any frame from the server since the last PING (see _keepalive).
        self._heard = asyncio.Event()
        self._told_read_only = False

    async def run(self) -> int:
        """Attach, and reattach after drops, until the session ends; its exit status."""
        self.local.start()
        keys = asyncio.create_task(self._read_keys())
        try:
            return await self._attach_until_done()
        except _Done as done:
            if done.message:
                self.local.notice(done.message)
            return done.status
        finally:
            keys.cancel()
            self.local.stop()

    # -- keys ----------------------------------------------------------------------------------

    async def _read_keys(self) -> None:
        """Keys from the local terminal: the escape `~.` leaves; the rest waits to be sent."""
        keys = KeyFilter()
        while True:
            data = await self.local.keys.get()
            if not data:
                return  # end of input: a script's keys are all queued
            sent, escape = keys.feed(data)
            if self.viewing:
                self.local.taken(len(data))
                if escape is Escape.LEAVE or keys.quits_viewer(data):
                    self.leave(0)
                    return
                if not self._told_read_only:
                    self._told_read_only = True
                    self.local.notice("read-only: your keys are not sent (q or Ctrl+C leaves)")
                continue
            self.local.taken(len(data) - len(sent))
            if sent:
                self._outbox.append(sent)
                self._outbox_ready.set()
            if escape is Escape.LEAVE:
                self.leave(FAILED, "disconnected (~.)")
                return
            if escape is Escape.SHARE:
                self.local.notice(self._share_notice())
            elif escape is Escape.HELP:
                self.local.notice(HELP)

    def _share_notice(self) -> str:
        if self.session_id is None:
            return "no session yet: nothing to share"
        if self.view_id is None:
            return "this server does not share sessions (--max-viewers 0)"
        link = share_link(self.endpoint, self.view_id)
        return f"read-only Share link: {link}"

    def leave(self, status: int, message: str = "") -> None:
        """Stop now and exit with `status` (the user typed `~.`, or a signal came)."""
        self._leave_status = status
        if message:
            self.local.notice(message)
        self._leave.set()

    # -- connections ----------------------------------------------------------------------------

    async def _attach_until_done(self) -> int:
        failed_opens = 0
        attempt = 0
        lost_at: float | None = None
        while True:
            opened = False
            try:
                async with self.connector(self.endpoint) as ws:
                    opened = True
                    return await self._converse(ws)
            except _Dropped as drop:
                reason = str(drop)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403, 400, 421):
                    raise _Done(FAILED, _refusal(status)) from None
                reason = f"the server answered HTTP {status}"
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                reason = _network_reason(exc)
            if self._leave.is_set():
                return self._leave_status
            now = time.monotonic()
            if opened:  # it worked until now: count afresh
                failed_opens, attempt, lost_at = 0, 0, now
            else:
                failed_opens += 1
                lost_at = now if lost_at is None else lost_at
            if not self._have_session() and failed_opens >= self.timing.max_failed_opens:
                raise _Done(FAILED, f"cannot reach {self.endpoint.url}: {reason}")
            if self._have_session() and now - lost_at > self.timing.give_up_after:
                raise _Done(FAILED, f"gave up reconnecting: {reason}")
            delay = min(self.timing.max_backoff, self.timing.first_backoff * 2**attempt)
            attempt += 1
            self.local.notice(f"connection lost ({reason}); reconnecting…")
            await self._pause(delay * random.uniform(0.8, 1.2))  # noqa: S311 (jitter)

    async def _pause(self, seconds: float) -> None:
        """Wait before reconnecting, unless the user leaves meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._leave.wait()
        if self._leave.is_set():
            raise _Done(self._leave_status)

    def _have_session(self) -> bool:
        return self.session_id is not None or self.joined

    def _hello(self) -> bytes:
        size = self.local.size()
        if self.viewing:
            assert self.endpoint.view_id is not None
            return encode_hello(
                size, view=(self.endpoint.view_id, self.received if self.joined else None)
            )
        resume = (self.session_id, self.received) if self.session_id is not None else None
        return encode_hello(size, resume=resume)

    async def _converse(self, ws: ClientConnection) -> int:
        """One connection's life: HELLO, then every direction at once until one ends it."""
        await ws.send(self._hello())
        pumps = [self._receive(ws), self._until_closed(self._keepalive(ws))]
        if not self.viewing:
            pumps += [
                self._until_closed(self._send_keys(ws)),
                self._until_closed(self._resizes(ws)),
            ]
        tasks: list[asyncio.Task[Any]] = [asyncio.create_task(pump) for pump in pumps]
        leave = asyncio.create_task(self._leave.wait())
        try:
            done, _ = await asyncio.wait([*tasks, leave], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (*tasks, leave):
                task.cancel()
            await asyncio.gather(*tasks, leave, return_exceptions=True)
        if leave in done:
            return self._leave_status
        # Only `_receive` returns (an exit status); the others end only by raising.
        finished = next(task for task in tasks if task in done)
        if (exc := finished.exception()) is not None:
            if isinstance(exc, ConnectionClosed):
                raise _Dropped(_network_reason(exc)) from None
            raise exc
        status: int = finished.result()
        return status

    @staticmethod
    async def _until_closed(pump: Coroutine[Any, Any, None]) -> None:
        """Run a sending pump; once the socket is closed, leave it to `_receive` to say why
        (frames that came before the close, an EXIT say, are still to be read)."""
        with contextlib.suppress(ConnectionClosed):
            await pump
        await asyncio.Future()  # never done: cancelled with the conversation

    async def _receive(self, ws: ClientConnection) -> int:
        async for message in ws:
            if isinstance(message, str):
                raise _Done(FAILED, "the server sent a text frame: not ec2-terminal.v1")
            try:
                frame = decode_server(message)
            except ProtocolViolation as exc:
                raise _Done(FAILED, str(exc)) from None
            self._heard.set()
            status = await self._handle(ws, frame)
            if status is not None:
                return status
        code = ws.close_code
        if code in FINAL_CLOSES:
            raise _Done(FAILED, f"the server closed the connection ({code} {ws.close_reason})")
        raise _Dropped(f"closed with {code}")

    async def _handle(self, ws: ClientConnection, frame: ServerFrame) -> int | None:
        """Act on one server frame; an exit status once the session is over."""
        kind, body = frame.type, frame.body or {}
        if kind is FrameType.OUTPUT:
            if frame.offset > self.received:
                raise _Done(
                    FAILED, f"output gap: expected byte {self.received}, got {frame.offset}"
                )
            fresh = frame.data[self.received - frame.offset :]
            if fresh:
                await self.local.write(fresh)
                self.received += len(fresh)
                with contextlib.suppress(ConnectionClosed):  # closed after an EXIT still queued
                    await ws.send(encode_ack(self.received))
        elif kind is FrameType.STATUS:
            self._status(body)
        elif kind is FrameType.EXIT:
            status = body.get("exit_status")
            if not isinstance(status, int):
                self.local.notice(f"session ended: {body.get('reason', '')}")
            return exit_status(status)
        elif kind is FrameType.ERROR:
            return await self._error(body)
        elif kind is FrameType.PING:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(encode(FrameType.PONG, frame.data))
        return None

    def _status(self, body: dict[str, object]) -> None:
        state = body.get("state")
        if state in ("connected", "resumed"):
            session_id, view_id = body.get("session_id"), body.get("view_id")
            if isinstance(session_id, str):
                self.session_id = session_id
            self.view_id = view_id if isinstance(view_id, str) else None
            if state == "resumed":
                self.local.notice("reconnected")
        elif state == "viewing":
            offset = body.get("offset")
            if not self.joined and isinstance(offset, int):
                self.received = offset
            if not self.joined:
                self.local.notice("watching read-only (q or Ctrl+C leaves)")
            self.joined = True
        elif state == "closed":
            raise _Done(FAILED, f"session taken over: {body.get('reason', '')}")

    async def _error(self, body: dict[str, object]) -> int | None:
        code, message = str(body.get("code", "")), str(body.get("message", ""))
        if code == "read_only":
            return None
        if code == "viewer_too_slow" and self.viewing:
            # The replay that follows draws the screen afresh, as the page's viewer does.
            await self.local.write(CLEAR_SCREEN)
            self.local.notice("fell behind the session: joining again")
            self.joined = False
            self.received = 0
            raise _Dropped("joining again")
        raise _Done(FAILED, f"{message} ({code})")

    async def _send_keys(self, ws: ClientConnection) -> None:
        while True:
            while not self._outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            data = self._outbox[0]
            for frame in encode_input(data):
                await ws.send(frame)
            self._outbox.popleft()
            self.local.taken(len(data))

    async def _resizes(self, ws: ClientConnection) -> None:
        last = self.local.size()
        while True:
            await self.local.resized.wait()
            self.local.resized.clear()
            size = self.local.size()
            if size != last:
                await ws.send(encode_resize(size))
                last = size

    async def _keepalive(self, ws: ClientConnection) -> None:
        """PINGs; the connection is dropped when nothing at all arrives within pong_timeout.

        Any frame is a sign of life, not only the PONG: behind a paste into a target that reads
        nothing the server stops reading the socket, so the PING waits unread behind the INPUT,
        and the server PINGs this client instead (docs/architecture.md, Flow control).
        """
        seq = 0
        while True:
            await asyncio.sleep(self.timing.ping_interval)
            seq += 1
            self._heard.clear()
            await ws.send(encode(FrameType.PING, seq.to_bytes(8, "big")))
            try:
                async with asyncio.timeout(self.timing.pong_timeout):
                    await self._heard.wait()
            except TimeoutError:
                raise _Dropped("no answer to keepalive") from None


def _refusal(status: int) -> str:
    return {
        401: "the server refused the access token (401)",
        403: "the server refused the connection (403): a foreign origin?",
        421: "the server does not answer for that host name (421): see --allowed-hosts",
    }.get(status, f"the server refused the connection (HTTP {status})")


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        return f"closed with {exc.rcvd.code if exc.rcvd else 'no close frame'}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__
