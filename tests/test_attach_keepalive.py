"""`ec2-terminal attach`'s keepalive against a server that does not read its socket for a while.

The server here is a real WebSocket server in the test that speaks just enough of
`ec2-terminal.v1` to play a session server whose input backlog is full: it reads nothing, so the
client's PINGs go unanswered, and it PINGs the client instead, as app/terminal does.
"""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from app.client.attach import Attacher, Timing, endpoint_for
from app.client.local import LocalTerminal
from app.terminal.protocol import SUBPROTOCOL, FrameType, encode, encode_json

pytestmark = pytest.mark.anyio

TIMING = Timing(ping_interval=0.2, pong_timeout=0.6, first_backoff=0.05, max_backoff=0.1)
#: Far longer than the client's keepalive (a PING every 0.2 s, 0.6 s for the answer).
STALL_S = 3.0

Scenario = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def session_server(scenario: Scenario, opened: list[int]) -> AsyncIterator[str]:
    """A server running `scenario` on each connection after HELLO; yields its page URL."""

    async def handler(ws: ServerConnection) -> None:
        opened.append(1)
        await ws.recv()  # HELLO
        await ws.send(encode_json(FrameType.STATUS, {"state": "connected", "session_id": "s"}))
        await scenario(ws)
        await ws.send(encode_json(FrameType.EXIT, {"exit_status": 3, "reason": "exited"}))
        async for _ in ws:  # what waited unread, up to the client's close
            pass

    async with serve(
        handler, "127.0.0.1", 0, subprotocols=[Subprotocol(SUBPROTOCOL)], ping_interval=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/"


async def attach(scenario: Scenario) -> tuple[int, int]:
    """Attach to a server running `scenario`: the exit status, and the sockets it took."""
    opened: list[int] = []
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        async with session_server(scenario, opened) as url:
            local = LocalTerminal(stdin=devnull, stdout=devnull, stderr=io.StringIO())
            attacher = Attacher(endpoint_for(url, "token"), local, timing=TIMING)
            async with asyncio.timeout(STALL_S + 20):
                status = await attacher.run()
    finally:
        os.close(devnull)
    return status, len(opened)


async def stalled_but_pinging(ws: ServerConnection) -> None:
    """Reads nothing (the client's PINGs wait unanswered) and PINGs the client meanwhile."""
    for _ in range(int(STALL_S / 0.1)):
        await ws.send(encode(FrameType.PING, b"stalled"))
        await asyncio.sleep(0.1)


def silent_once() -> Scenario:
    """The first connection goes quiet past the keepalive; a later one ends at once."""
    quiet = [True]

    async def scenario(ws: ServerConnection) -> None:
        if quiet.pop() if quiet else False:
            await asyncio.sleep(STALL_S)

    return scenario


async def test_a_server_that_pings_while_not_reading_keeps_the_connection() -> None:
    status, sockets = await attach(stalled_but_pinging)
    assert status == 3
    assert sockets == 1, "the client dropped a live server that could not answer its PING"


async def test_a_silent_server_is_still_dropped_and_the_session_resumed() -> None:
    status, sockets = await attach(silent_once())
    assert status == 3
    assert sockets == 2, "a server that said nothing past the keepalive counts as gone"
