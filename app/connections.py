"""uvicorn's connection protocols, with what this server needs on top of them."""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol, quiet about the handshakes it refuses."""

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body"):
            # uvicorn writes the denial response but never marks the handshake as done, so it
            # logs "ASGI callable returned without completing handshake" at ERROR for every
            # refused upgrade (its wsproto protocol does mark it; uvicorn PR #3138).
            self.handshake_complete = True
