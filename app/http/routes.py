"""HTTP and WebSocket endpoints; the state they share is the ServerState on the app."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from app.auth.authenticator import Authenticator
from app.errors import ProtocolViolation
from app.http.middleware import NO_STORE
from app.http.state import server_state
from app.terminal.bridge import Bridge
from app.terminal.closecodes import CloseCode
from app.terminal.ports import SocketClosed
from app.terminal.protocol import SUBPROTOCOL

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent.parent / "static"
# The scope key under which tracing hands a WebSocket's endpoint its ConnectionObserver.
CONNECTION_OBSERVER = "ec2_terminal.connection_observer"


def _auth(request: Request | WebSocket) -> Authenticator:
    return server_state(request.app).auth


async def page(request: Request) -> Response:
    """The terminal page; a token in its URL is left for the page to POST (a preview must not)."""
    return static_page("index.html", NO_STORE)


def static_page(name: str, headers: Mapping[str, str]) -> Response:
    """A page of the built front end, or 503 saying how to build it."""
    path = STATIC_DIR / name
    if not path.is_file():
        return PlainTextResponse("The front end is not built: run hack/setup.", status_code=503)
    return FileResponse(path, headers=headers)


async def add_slash(request: Request) -> Response:
    """`P` (or `P/recordings`) without its final slash: redirect to it, relative, with no query.

    Starlette's own redirect builds an absolute URL from the Host header and keeps the query
    string, which may hold a token.
    """
    last = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    return RedirectResponse(f"{last}/", status_code=307, headers=NO_STORE)


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: configured, credentials present, not shutting down."""
    problem = server_state(request.app).ready_problem()
    if problem:
        return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    return Response(
        generate_latest(server_state(request.app).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


def denied(status: int, message: str) -> Response:
    """A refusal in plain words, never cached."""
    return PlainTextResponse(message, status_code=status, headers=NO_STORE)


def _disconnect_reason(message: Message) -> str:
    """Why a socket closed, from the ASGI disconnect event, for the log."""
    code = message.get("code", CloseCode.NORMAL)
    if message.get("reason"):
        return str(message["reason"])
    if code in (1005, 1006):  # no close frame: the TCP connection itself ended
        return "the connection dropped"
    return f"the client closed it (code {code})"


class StarletteSocket:
    """The bridge's Socket on a Starlette WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> bytes:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise SocketClosed(_disconnect_reason(message))
        data = message.get("bytes")
        if data is None:
            raise ProtocolViolation("text frames are not part of ec2-terminal.v1; send binary")
        return bytes(data)

    async def send(self, data: bytes) -> None:
        try:
            await self.websocket.send_bytes(data)
        except (OSError, RuntimeError, WebSocketDisconnect) as exc:
            raise SocketClosed from exc

    async def close(self, code: int, reason: str) -> None:
        # The peer may have closed first.
        with contextlib.suppress(OSError, RuntimeError, WebSocketDisconnect):
            await self.websocket.close(code, reason)


async def terminal_socket(websocket: WebSocket) -> None:
    """The `ec2-terminal.v1` WebSocket: checks Origin and auth before accepting."""
    state = server_state(websocket.app)
    auth = state.auth
    if not auth.origin_ok(websocket.headers, websocket.url.scheme):
        log.warning("refused a WebSocket from origin %r", websocket.headers.get("origin"))
        await websocket.send_denial_response(denied(403, "origin not allowed"))
        return
    caller = auth.caller(websocket.headers, websocket.cookies)
    if caller is None:
        await websocket.send_denial_response(denied(401, "authentication required"))
        return
    if caller.login is not None and "origin" not in websocket.headers:
        # A login cookie belongs to a browser, and browsers always send Origin on WebSocket
        # handshakes: a cookie without one was not sent by the page.
        log.info("refused a WebSocket with a login cookie and no Origin")
        await websocket.send_denial_response(denied(403, "origin required"))
        return
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", []):
        await websocket.send_denial_response(denied(400, f"subprotocol {SUBPROTOCOL} required"))
        return
    if state.draining:
        await websocket.send_denial_response(denied(503, "server is shutting down"))
        return
    observer = websocket.scope.get(CONNECTION_OBSERVER)
    bridge = Bridge(
        StarletteSocket(websocket), state.registry, state.metrics, observer, caller.identity
    )
    # Registered before the first await: a logout or token change from now on ends it.
    with auth.logins.connection(caller.login, bridge.revoke):
        await websocket.accept(subprotocol=SUBPROTOCOL)
        await bridge.run()
