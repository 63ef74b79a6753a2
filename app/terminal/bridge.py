"""Moves one client socket's frames to and from a session; knows neither Starlette nor asyncssh."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from app.errors import OutputLost, ProtocolViolation, TerminalError
from app.metrics import Metrics
from app.terminal.closecodes import CloseCode
from app.terminal.observer import (
    ConnectionEvent,
    ConnectionObserver,
    EventValue,
    NoObserver,
    session_ref,
)
from app.terminal.ports import Socket, SocketClosed
from app.terminal.protocol import (
    ConnectionState,
    FrameType,
    Hello,
    decode,
    encode,
    encode_json,
    encode_output,
    parse_ack,
    parse_hello,
    parse_resize,
)
from app.terminal.registry import SessionRegistry
from app.terminal.session import Session
from app.terminal.viewer import Viewer

log = logging.getLogger(__name__)


def close_reason(text: str) -> str:
    """`text` cut to fit a close frame's 123 bytes of UTF-8, never inside a character."""
    return text.encode()[:120].decode(errors="ignore")


class Bridge:
    """Serves one WebSocket connection for its whole life."""

    def __init__(
        self,
        socket: Socket,
        registry: SessionRegistry,
        metrics: Metrics,
        observer: ConnectionObserver | None = None,
        identity: str = "",
    ) -> None:
        self.socket = socket
        # Who the socket's credential belongs to: an owner's files are theirs alone.
        self.identity = identity
        self.registry = registry
        self.metrics = metrics
        self.observer = observer or NoObserver()
        # When the oldest INPUT not yet followed by an OUTPUT arrived (echo latency).
        self._input_since: float | None = None
        self.limits = registry.limits
        self.sent = 0
        self._send_lock = asyncio.Lock()
        self._closed = False
        self._kicked = asyncio.Event()
        self._changed = asyncio.Event()
        # Set the moment this bridge attaches, before any send that may find the socket gone,
        # so `run` always detaches what it attached.
        self._session: Session | None = None
        self._revocations: set[asyncio.Task[None]] = set()
        # Why this connection ended, for the log line that closes its story.
        self._why = ""

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            if self._closed:
                raise SocketClosed
            await self.socket.send(data)

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if not self._closed:
                self._closed = True
                await self.socket.close(code, close_reason(reason))

    async def _status(self, state: ConnectionState, **extra: Any) -> None:
        await self._send(encode_json(FrameType.STATUS, {"state": state, **extra}))

    async def run(self) -> None:
        """Handshake, attach to a session, then pump both ways until either side ends."""
        self.metrics.active_connections.inc()
        try:
            hello = await self._hello()
            if hello.view is not None:
                await self._watch(hello)
            else:
                await self._serve(await self._attach(hello))
        except SocketClosed as closed:
            self._why = self._why or closed.reason or "the connection dropped"
        except TerminalError as exc:
            self.metrics.errors_total.labels(exc.code).inc()
            self._ended_with(exc)
            await self._fail(exc)
        except Exception:
            # A bug must not leave the browser guessing: say so, keep details in the log.
            log.exception("connection failed unexpectedly")
            self.metrics.errors_total.labels(TerminalError.code).inc()
            self._why = "internal error"
            await self._fail(TerminalError("internal error in the terminal server"))
        finally:
            self.metrics.active_connections.dec()
            if self._session is not None:
                self._session.detach(self)
                log.info("session %s: connection closed: %s", self._session.id, self._why)

    def _ended_with(self, exc: TerminalError) -> None:
        """Note an error that ends this connection; logged now if no session will log it."""
        self._why = f"{exc.code}: {exc}"
        if self._session is None:
            log.info("connection ended with %s: %s", exc.code, exc)

    def revoke(self, error: TerminalError) -> None:
        """The credential this connection came with has ended: tell the client why and close.

        Closing the socket ends whatever `run` is doing (a receive sees the close, a send
        fails), so it winds down as if the client had left, detaching from its session.
        """
        self.metrics.errors_total.labels(error.code).inc()
        self._ended_with(error)
        task = asyncio.get_running_loop().create_task(self._fail(error))
        self._revocations.add(task)
        task.add_done_callback(self._revocations.discard)

    async def _fail(self, exc: TerminalError) -> None:
        self.observer.event(ConnectionEvent.ERROR, {"code": exc.code, "close_code": exc.close_code})
        try:
            await self._send(encode_json(FrameType.ERROR, {"code": exc.code, "message": str(exc)}))
            await self._close(exc.close_code, str(exc))
        except SocketClosed:
            log.debug("could not deliver error %s: the client has gone", exc.code)

    async def _hello(self) -> Hello:
        try:
            async with asyncio.timeout(self.limits.hello_timeout):
                frame = decode(await self.socket.receive())
        except TimeoutError:
            raise ProtocolViolation("no HELLO frame within the time limit") from None
        if frame.type is not FrameType.HELLO:
            raise ProtocolViolation("the first frame must be HELLO")
        return parse_hello(frame.payload)

    async def _attach(self, hello: Hello) -> Session:
        if hello.resume is None:
            await self._status(ConnectionState.CONNECTING)
            session = await self.registry.open(hello.size)
            session.attach(self, self.identity)
            self._session = session
            self.sent = 0
            state = ConnectionState.CONNECTED
            size = hello.size
            log.info("session %s: connection opened (%dx%d)", session.id, size.cols, size.rows)
        else:
            session = self.registry.get(hello.resume.session_id)
            offset = hello.resume.offset
            if not session.buffer.start <= offset <= session.buffer.end:
                raise OutputLost(
                    f"cannot resume from byte {offset}: this session keeps bytes "
                    f"{session.buffer.start} to {session.buffer.end}"
                )
            displaced = session.attach(self, self.identity)
            self._session = session
            log.info(
                "session %s: connection resumed from byte %d%s",
                session.id,
                offset,
                ", taking it over from another connection" if displaced else "",
            )
            if displaced is not None:
                await displaced.kick()
            self.sent = offset
            session.ack(offset)
            session.resize(hello.size)
            state = ConnectionState.RESUMED
            self.observer.event(
                ConnectionEvent.RESUME,
                {
                    "session": session_ref(session.id),
                    "offset": offset,
                    "takeover": displaced is not None,
                },
            )
        self.registry.note_activity()
        terminal = session.terminal
        sharing: dict[str, Any] = session.sharing()
        if session.view_id is not None:
            sharing["view_id"] = session.view_id
        self._changed.clear()  # the STATUS below already says it
        try:
            await self._status(
                state,
                session_id=session.id,
                host_key_sha256=terminal.host_key_sha256 if terminal else "",
                offset=self.sent,
                window=self.limits.flow_window,
                **sharing,
            )
        except SocketClosed:
            if hello.resume is None:
                # The client left during the connect and never learned the id: nobody can
                # resume this session, so it gives its slot back now, not after the grace period.
                session.end("the client left before the session was ready", resumable=False)
            raise
        if hello.resume is None:
            size = hello.size
            self.observer.event(
                ConnectionEvent.CONNECT,
                {"session": session_ref(session.id), "cols": size.cols, "rows": size.rows},
            )
        return session

    async def _watch(self, hello: Hello) -> None:
        """Serve a viewer of a shared session, read-only."""
        assert hello.view is not None
        session = self.registry.get_shared(hello.view.view_id)
        viewer = Viewer(
            session, self._send, self.socket.receive, self._close, self._status, self.metrics
        )
        await viewer.watch(hello.view)

    def changed(self) -> None:
        """The session's viewer count or size changed: the update task tells the client."""
        self._changed.set()

    async def _pump_updates(self, session: Session) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._status(ConnectionState.UPDATE, **session.sharing())

    async def kick(self) -> None:
        """Another connection resumed this session: this one steps aside."""
        self._kicked.set()
        self.observer.event(ConnectionEvent.TAKEOVER, {})
        self._why = "taken over by another connection"
        with contextlib.suppress(SocketClosed):
            await self._status(ConnectionState.CLOSED, reason="resumed by another connection")
            await self._close(CloseCode.POLICY_VIOLATION, "session resumed by another connection")

    async def _kicked_wait(self) -> None:
        await self._kicked.wait()

    async def _serve(self, session: Session) -> None:
        output = asyncio.create_task(self._pump_output(session))
        inputs = asyncio.create_task(self._pump_input(session))
        updates = asyncio.create_task(self._pump_updates(session))
        kicked = asyncio.create_task(self._kicked_wait())
        tasks = (output, inputs, updates, kicked)
        try:
            done, _ = await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task is not kicked and (exc := task.exception()) is not None:
                raise exc

    async def _pump_output(self, session: Session) -> None:
        while (chunk := await session.next_output(self.sent)) is not None:
            await self._send(encode_output(self.sent, chunk))
            self.sent += len(chunk)
            if self._input_since is not None:
                self.metrics.echo_latency_seconds.observe(time.perf_counter() - self._input_since)
                self._input_since = None
        info = session.exit
        assert info is not None
        await self._send(
            encode_json(FrameType.EXIT, {"exit_status": info.exit_status, "reason": info.reason})
        )
        session.exit_delivered()
        exit_attributes: dict[str, EventValue] = {"reason": info.reason}
        if info.exit_status is not None:
            exit_attributes["exit_status"] = info.exit_status
        self.observer.event(ConnectionEvent.EXIT, exit_attributes)
        self._why = f"EXIT delivered ({info.reason})"
        await self._close(CloseCode.NORMAL, info.reason)

    async def _stalled(self) -> None:
        """Not reading the socket (the input backlog is full): a PING says this end is alive."""
        await self._send(encode(FrameType.PING, b"stalled"))

    async def _pump_input(self, session: Session) -> None:
        while True:
            frame = decode(await self.socket.receive())
            kind, payload = frame.type, frame.payload
            if kind is FrameType.INPUT:
                if self._input_since is None:
                    self._input_since = time.perf_counter()
                await session.write(payload, self._stalled)
                self.registry.note_activity()
            elif kind is FrameType.RESIZE:
                size = parse_resize(payload)
                session.resize(size)
                self.registry.note_activity()
                self.observer.event(ConnectionEvent.RESIZE, {"cols": size.cols, "rows": size.rows})
            elif kind is FrameType.ACK:
                offset = parse_ack(payload)
                if offset > self.sent:
                    raise ProtocolViolation(f"ACK of byte {offset}, but only {self.sent} were sent")
                session.ack(offset)
            elif kind is FrameType.PING:
                await self._send(encode(FrameType.PONG, payload))
            elif kind is FrameType.HELLO:
                raise ProtocolViolation("HELLO may only be the first frame")
