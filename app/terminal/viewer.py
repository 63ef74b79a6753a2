"""A read-only connection to a shared session: its own offset and window, never the owner's pace."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.errors import OutputLost, ProtocolViolation, ReadOnly, ViewerTooSlow
from app.metrics import Metrics
from app.terminal.closecodes import CloseCode
from app.terminal.protocol import (
    ConnectionState,
    FrameType,
    View,
    decode,
    encode,
    encode_json,
    encode_output,
    parse_ack,
)
from app.terminal.session import Session

log = logging.getLogger(__name__)

Send = Callable[[bytes], Awaitable[None]]
Receive = Callable[[], Awaitable[bytes]]
Close = Callable[[int, str], Awaitable[None]]
Status = Callable[..., Awaitable[None]]

# How far into the kept output a viewer's replay may skip to begin at a line: a replay that
# starts inside an escape sequence would show its tail as text.
LINE_SEARCH = 64 * 1024


def join_offset(session: Session) -> int:
    """Where a new viewer's replay begins: the start of the kept output, or the next line."""
    start = session.buffer.start
    if start == 0:
        return 0  # the whole session: exactly the owner's screen
    head = session.buffer.read(start, LINE_SEARCH)
    newline = head.find(b"\n")
    return start if newline < 0 else start + newline + 1


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of `waits` finishes; cancel the rest."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class Viewer:
    """Serves one viewer: the session's output from its own offset, at the pace of its own ACKs.

    The owner's flow control never waits for a viewer: the viewer reads the replay buffer the
    owner's ACKs keep, and once the owner has moved more than the buffer on, the output the
    viewer still needs is gone and the viewer is cut with `viewer_too_slow`.
    """

    def __init__(
        self,
        session: Session,
        send: Send,
        receive: Receive,
        close: Close,
        status: Status,
        metrics: Metrics,
    ) -> None:
        self.session = session
        self._send = send
        self._receive = receive
        self._close = close
        self._status = status
        self.metrics = metrics
        self.window = session.limits.flow_window
        self.sent = 0
        self.acked = 0
        self._acked = asyncio.Event()
        self._changed = asyncio.Event()

    def changed(self) -> None:
        """The viewer count or the size changed: the update task tells the client."""
        self._changed.set()

    async def watch(self, view: View) -> None:
        """Join the session, replay what it keeps, then follow it until it ends or this leaves."""
        session = self.session
        offset = join_offset(session) if view.offset is None else view.offset
        if not session.buffer.start <= offset <= session.buffer.end:
            raise OutputLost(
                f"cannot watch from byte {offset}: this session keeps bytes "
                f"{session.buffer.start} to {session.buffer.end}"
            )
        self.sent = self.acked = offset
        session.add_viewer(self)
        log.info("session %s: a viewer joined (%d watching)", session.id, session.viewer_count)
        try:
            self._changed.clear()  # the STATUS below already says it
            terminal = session.terminal
            await self._status(
                ConnectionState.VIEWING,
                host_key_sha256=terminal.host_key_sha256 if terminal else "",
                offset=offset,
                window=self.window,
                **session.sharing(),
            )
            await self._serve()
        finally:
            session.remove_viewer(self)
            log.info("session %s: a viewer left (%d watching)", session.id, session.viewer_count)

    async def _serve(self) -> None:
        tasks = [
            asyncio.create_task(self._pump_output()),
            asyncio.create_task(self._pump_input()),
            asyncio.create_task(self._pump_updates()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if (exc := task.exception()) is not None:
                raise exc

    async def _pump_output(self) -> None:
        session = self.session
        while True:
            await self._window_open()
            try:
                chunk = await session.next_output(self.sent)
            except OutputLost:
                raise ViewerTooSlow(
                    "this viewer fell too far behind the session: the output it still needed "
                    "is no longer kept; join again to see the current screen"
                ) from None
            if chunk is None:
                break
            await self._send(encode_output(self.sent, chunk))
            self.sent += len(chunk)
        info = session.exit
        assert info is not None
        body = {"exit_status": info.exit_status, "reason": info.reason}
        await self._send(encode_json(FrameType.EXIT, body))
        await self._close(CloseCode.NORMAL, info.reason)

    async def _window_open(self) -> None:
        """Wait while this viewer has a window of output unacknowledged."""
        while self.sent - self.acked >= self.window:
            if self.session.released.is_set():
                raise ViewerTooSlow("the session ended before this viewer caught up")
            self._acked.clear()
            await _first(self._acked.wait(), self.session.released.wait())

    async def _pump_input(self) -> None:
        while True:
            frame = decode(await self._receive())
            kind = frame.type
            if kind in (FrameType.INPUT, FrameType.RESIZE):
                refusal = ReadOnly(
                    "you are watching this session read-only: typing and resizing are not sent"
                )
                self.metrics.errors_total.labels(refusal.code).inc()
                body = {"code": refusal.code, "message": str(refusal)}
                await self._send(encode_json(FrameType.ERROR, body))
            elif kind is FrameType.ACK:
                offset = parse_ack(frame.payload)
                if offset > self.sent:
                    raise ProtocolViolation(f"ACK of byte {offset}, but only {self.sent} were sent")
                if offset > self.acked:
                    self.acked = offset
                    self._acked.set()
            elif kind is FrameType.PING:
                await self._send(encode(FrameType.PONG, frame.payload))
            elif kind is FrameType.HELLO:
                raise ProtocolViolation("HELLO may only be the first frame")

    async def _pump_updates(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._status(ConnectionState.UPDATE, **self.session.sharing())
