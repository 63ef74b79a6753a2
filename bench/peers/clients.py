"""Lean clients, one per peer, each speaking to its server as that tool's own page does.

They render nothing: output counts as rendered the moment it arrives, so whatever a page
acknowledges after rendering is acknowledged at once. WebSocket clients offer
permessage-deflate as a browser does (`client_max_window_bits`, nothing else) and send no
WebSocket pings of their own (browsers do not).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from abc import ABC, abstractmethod
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.typing import Subprotocol

from app.terminal.protocol import (
    SUBPROTOCOL,
    FrameType,
    decode_output,
    encode,
    encode_ack,
    encode_json,
)
from bench.bridge import ssh_argv
from bench.peers.servers import Peer, Target

COLS, ROWS = 120, 40
OPEN_TIMEOUT = 30


class SessionClosed(Exception):
    """The session ended: the server closed it or the client process exited."""


class Session(ABC):
    """One terminal session: bytes in, bytes out, in order."""

    @abstractmethod
    async def send(self, data: bytes) -> None:
        """Type `data`."""

    @abstractmethod
    async def read(self) -> bytes:
        """The next output bytes (at least one); raises SessionClosed once the session ended."""

    @abstractmethod
    async def close(self) -> None:
        """End the session as closing the page would."""

    #: The WebSocket extensions the server agreed to (permessage-deflate or none).
    extensions: str = ""
    #: New sockets the client opened to resume this session after its socket dropped.
    reconnects: int = 0


async def _websocket(
    url: str,
    subprotocol: str | None,
    origin: str,
    headers: dict[str, str] | None = None,
    deflate: bool = True,
) -> ClientConnection:
    """A WebSocket opened with what a browser offers: its Origin, permessage-deflate."""
    try:
        return await connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
            additional_headers=headers,
            compression=None,
            extensions=[ClientPerMessageDeflateFactory()] if deflate else None,
            proxy=None,
            open_timeout=OPEN_TIMEOUT,
            ping_interval=None,
            max_size=None,
            close_timeout=2,
        )
    except (OSError, WebSocketException, TimeoutError) as exc:
        raise SessionClosed(f"WebSocket to {url} failed: {exc!r}") from exc


def _negotiated(ws: ClientConnection) -> str:
    value = ws.response.headers.get("Sec-WebSocket-Extensions", "") if ws.response else ""
    return str(value)


class _WebSocketSession(Session):
    """A session over one WebSocket; subclasses frame input and unframe output."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.extensions = _negotiated(ws)

    async def _recv(self) -> str | bytes:
        try:
            return await self.ws.recv()
        except ConnectionClosed as exc:
            raise SessionClosed(f"closed: {exc}") from exc

    async def _send(self, message: str | bytes) -> None:
        try:
            await self.ws.send(message)
        except ConnectionClosed as exc:
            raise SessionClosed(f"closed: {exc}") from exc

    async def close(self) -> None:
        with contextlib.suppress(WebSocketException, OSError):
            await self.ws.close()


class SshSession(Session):
    """`ssh -tt` to the sshd, output read from its standard output."""

    def __init__(self, target: Target, process: asyncio.subprocess.Process) -> None:
        self.target = target
        self.process = process

    @classmethod
    async def open(cls, target: Target) -> SshSession:
        process = await asyncio.create_subprocess_exec(
            *ssh_argv(target.sshd, "-tt"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        target.ssh_pids.add(process.pid)
        return cls(target, process)

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(data)
            await self.process.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise SessionClosed("ssh exited") from exc

    async def read(self) -> bytes:
        assert self.process.stdout is not None
        data = await self.process.stdout.read(1 << 16)
        if not data:
            raise SessionClosed(f"ssh exited ({await self.process.wait()})")
        return data

    async def close(self) -> None:
        self.target.retire(self.process.pid)
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


class Ec2TerminalSession(_WebSocketSession):
    """`ec2-terminal.v1` as web/src speaks it: HELLO, OUTPUT by offset, ACK of what was
    rendered, and, when the socket drops, a new socket resuming the session at its offset."""

    #: The page ACKs at once after this much output, else after ACK_DELAY_S (web/src/output.ts).
    ACK_EVERY = 64 * 1024
    ACK_DELAY_S = 0.05
    #: The page's first reconnect delay, and how often it tries (web/src/connection.ts).
    RECONNECT_DELAY_S = 0.5
    MAX_RECONNECTS = 5

    def __init__(self, ws: ClientConnection, target: Target) -> None:
        super().__init__(ws)
        self.target = target
        self.offset = 0
        self.acked = 0
        self.session_id: str | None = None
        self.ended = False
        self.timer: asyncio.TimerHandle | None = None
        self.pending: set[asyncio.Task[None]] = set()

    @staticmethod
    async def _connect(target: Target, hello: dict[str, Any]) -> ClientConnection:
        assert target.server is not None
        url = f"ws://127.0.0.1:{target.port}{target.server.base_path}ws"
        headers = {"Authorization": f"Bearer {target.server.token}"}
        ws = await _websocket(url, SUBPROTOCOL, target.origin, headers)
        await ws.send(encode_json(FrameType.HELLO, hello))
        return ws

    @classmethod
    async def open(cls, target: Target) -> Ec2TerminalSession:
        return cls(await cls._connect(target, {"cols": COLS, "rows": ROWS}), target)

    async def _resume(self, reason: SessionClosed) -> None:
        """A new socket for the same session, replaying from what arrived: the page's resume."""
        if self.ended or self.session_id is None or self.reconnects >= self.MAX_RECONNECTS:
            raise reason
        await asyncio.sleep(self.RECONNECT_DELAY_S)
        resume = {"id": self.session_id, "offset": self.offset}
        self.ws = await self._connect(self.target, {"cols": COLS, "rows": ROWS, "resume": resume})
        self.acked = self.offset  # the resume offset acknowledges everything before it
        self.reconnects += 1

    async def send(self, data: bytes) -> None:
        try:
            await self._send(encode(FrameType.INPUT, data))
        except SessionClosed as exc:
            await self._resume(exc)
            await self._send(encode(FrameType.INPUT, data))

    async def _ack(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.offset > self.acked:
            self.acked = self.offset
            # An ACK lost with a dropped socket is moot: the resume offset acknowledges it.
            with contextlib.suppress(SessionClosed):
                await self._send(encode_ack(self.offset))

    def _ack_later(self) -> None:
        self.timer = None
        task = asyncio.ensure_future(self._ack())
        self.pending.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.pending.discard(task)

    async def read(self) -> bytes:
        while True:
            try:
                frame = await self._recv()
            except SessionClosed as exc:
                await self._resume(exc)
                continue
            if not isinstance(frame, bytes) or not frame:
                raise SessionClosed("ec2-terminal sent a text frame")
            kind = frame[0]
            if kind == FrameType.OUTPUT:
                offset, data = decode_output(frame[1:])
                if offset > self.offset:
                    raise SessionClosed(f"output gap: offset {offset}, expected {self.offset}")
                data = data[self.offset - offset :]  # a replay may repeat what already arrived
                if not data:
                    continue
                self.offset += len(data)
                if self.offset - self.acked >= self.ACK_EVERY:
                    await self._ack()
                elif self.timer is None:
                    self.timer = asyncio.get_running_loop().call_later(
                        self.ACK_DELAY_S, self._ack_later
                    )
                return data
            if kind == FrameType.STATUS:
                status = json.loads(frame[1:])
                self.session_id = status.get("session_id") or self.session_id
            elif kind in (FrameType.EXIT, FrameType.ERROR):
                self.ended = True
                raise SessionClosed(f"{FrameType(kind).name}: {frame[1:]!r}")

    async def close(self) -> None:
        self.ended = True
        if self.timer is not None:
            self.timer.cancel()
        for task in list(self.pending):
            task.cancel()
        await super().close()


class TtydSession(_WebSocketSession):
    """ttyd 1.7's `tty` subprotocol: token, JSON start, '0' input and output, RESUME per 100 kB."""

    #: ttyd's page: past `limit` bytes it writes with a callback and, that callback done with
    #: fewer than `lowWater` pending, sends RESUME; instant rendering makes that every 100 kB.
    FLOW_LIMIT = 100_000

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws)
        self.written = 0

    @classmethod
    async def open(cls, target: Target) -> TtydSession:
        async with httpx.AsyncClient(trust_env=False, timeout=OPEN_TIMEOUT) as http:
            token = (await http.get(f"{target.origin}/token")).json()["token"]
        url = f"ws://127.0.0.1:{target.port}/ws"
        deflate = target.peer is not Peer.TTYD_PLAIN
        session = cls(await _websocket(url, "tty", target.origin, deflate=deflate))
        start = {"AuthToken": token, "columns": COLS, "rows": ROWS}
        await session._send(json.dumps(start).encode())
        return session

    async def send(self, data: bytes) -> None:
        await self._send(b"0" + data)

    async def read(self) -> bytes:
        while True:
            message = await self._recv()
            data = message.encode() if isinstance(message, str) else message
            if data[:1] != b"0":
                continue  # window title, preferences
            self.written += len(data) - 1
            if self.written > self.FLOW_LIMIT:
                self.written = 0
                await self._send(b"3")
            if len(data) > 1:
                return data[1:]


class GottySession(_WebSocketSession):
    """gotty's `webtty`: auth token, JSON start, resize, base64 input and output in text frames."""

    @classmethod
    async def open(cls, target: Target) -> GottySession:
        async with httpx.AsyncClient(trust_env=False, timeout=OPEN_TIMEOUT) as http:
            script = (await http.get(f"{target.origin}/auth_token.js")).text
        found = re.search(r"gotty_auth_token\s*=\s*['\"]([^'\"]*)['\"]", script)
        ws = await _websocket(f"ws://127.0.0.1:{target.port}/ws", "webtty", target.origin)
        session = cls(ws)
        token = found.group(1) if found else ""
        await session._send(json.dumps({"Arguments": "", "AuthToken": token}))
        await session._send("3" + json.dumps({"columns": COLS, "rows": ROWS}))
        await session._send("4base64")
        return session

    async def send(self, data: bytes) -> None:
        await self._send("1" + base64.b64encode(data).decode())

    async def read(self) -> bytes:
        while True:
            message = await self._recv()
            text = message if isinstance(message, str) else message.decode()
            if text[:1] == "1" and len(text) > 1:
                return base64.b64decode(text[1:])


class WebsshSession(_WebSocketSession):
    """webssh: XSRF cookie, the login form POSTed (key as a file), then the socket by its id."""

    @classmethod
    async def open(cls, target: Target) -> WebsshSession:
        sshd = target.sshd
        headers = {"Origin": target.origin}
        async with httpx.AsyncClient(trust_env=False, timeout=OPEN_TIMEOUT) as http:
            page = await http.get(f"{target.origin}/")
            xsrf = page.cookies.get("_xsrf") or ""
            form = {
                "hostname": sshd.host,
                "port": str(sshd.port),
                "username": sshd.user,
                "password": "",
                "passphrase": "",
                "totp": "",
                "term": "xterm-256color",
                "_xsrf": xsrf,
            }
            key = ("id_ed25519", sshd.client_key_path.read_bytes())
            response = await http.post(
                f"{target.origin}/", data=form, files={"privatekey": key}, headers=headers
            )
        body: dict[str, Any] = response.json() if response.status_code == 200 else {}
        if not body.get("id"):
            raise SessionClosed(f"webssh refused: {response.status_code} {response.text[:300]}")
        url = f"ws://127.0.0.1:{target.port}/ws?id={body['id']}"
        session = cls(await _websocket(url, None, target.origin))
        await session._send(json.dumps({"resize": [COLS, ROWS]}))
        return session

    async def send(self, data: bytes) -> None:
        await self._send(json.dumps({"data": data.decode()}))

    async def read(self) -> bytes:
        while True:
            message = await self._recv()
            data = message.encode() if isinstance(message, str) else message
            if data:
                return data


class WettySession(_WebSocketSession):
    """wetty: socket.io v4 over a WebSocket; `commit` after every 256 KiB as its page does."""

    #: wetty's FlowControlClient.ackBytes.
    COMMIT_EVERY = 262_144

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(ws)
        self.uncommitted = 0

    @classmethod
    async def open(cls, target: Target) -> WettySession:
        url = f"ws://127.0.0.1:{target.port}/socket.io/?EIO=4&transport=websocket"
        session = cls(await _websocket(url, None, target.origin))
        opening = await session._recv()
        if not isinstance(opening, str) or not opening.startswith("0"):
            raise SessionClosed(f"wetty: no Engine.IO open packet: {opening!r}")
        await session._send("40")
        # An event sent before the server acknowledges the namespace makes it drop the socket.
        while not (reply := str(await session._recv())).startswith("40"):
            if reply == "2":
                await session._send("3")
            elif reply.startswith("44"):
                raise SessionClosed(f"wetty refused the connection: {reply}")
        await session._emit("resize", {"cols": COLS, "rows": ROWS})
        return session

    async def _emit(self, event: str, *args: Any) -> None:
        await self._send("42" + json.dumps([event, *args], separators=(",", ":")))

    async def send(self, data: bytes) -> None:
        await self._emit("input", data.decode())

    async def read(self) -> bytes:
        while True:
            message = await self._recv()
            if not isinstance(message, str):
                continue
            if message == "2":  # Engine.IO ping: the client answers, or the server drops it
                await self._send("3")
            elif message.startswith("41"):
                raise SessionClosed("socket.io disconnect")
            elif message.startswith("42"):
                event, *args = json.loads(message[2:])
                if event == "data" and args and args[0]:
                    text: str = args[0]
                    self.uncommitted += len(text)
                    if self.uncommitted >= self.COMMIT_EVERY:
                        self.uncommitted -= self.COMMIT_EVERY
                        await self._emit("commit", self.COMMIT_EVERY)
                    return text.encode()
                if event == "login":
                    await self._emit("resize", {"cols": COLS, "rows": ROWS})
                elif event == "logout":
                    raise SessionClosed("wetty: logout")


OPENERS = {
    Peer.SSH: SshSession.open,
    Peer.EC2_TERMINAL: Ec2TerminalSession.open,
    Peer.TTYD: TtydSession.open,
    Peer.TTYD_PLAIN: TtydSession.open,
    Peer.GOTTY: GottySession.open,
    Peer.WEBSSH: WebsshSession.open,
    Peer.WETTY: WettySession.open,
}


async def open_session(target: Target) -> Session:
    """A new session on `target`, its socket open (the prompt may not have arrived yet)."""
    opener = OPENERS[target.peer]
    session: Session = await opener(target)
    return session
