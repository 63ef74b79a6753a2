"""The uvicorn server that runs the app: its settings, and a drain before it stops."""

from __future__ import annotations

import asyncio
from types import FrameType
from typing import Any

import uvicorn
from starlette.applications import Starlette

from app.http.connections import WebSocketProtocol, http_protocol
from app.http.state import server_state
from app.settings import Settings
from app.terminal.protocol import MAX_WEBSOCKET_MESSAGE


class DrainingServer(uvicorn.Server):
    """On SIGTERM or Ctrl+C, sends every client an EXIT before uvicorn closes the sockets."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self.app = app
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._loop is None or self._drain_task is not None:
            self.force_exit = self.should_exit  # a second signal means now
            self.should_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain)

    def _start_drain(self) -> None:
        async def drain_then_exit() -> None:
            try:
                await server_state(self.app).drain()
            finally:
                self.should_exit = True

        self._drain_task = asyncio.ensure_future(drain_then_exit())


def uvicorn_config(app: Starlette, settings: Settings) -> uvicorn.Config:
    """uvicorn settings shared by `serve` and `demo`."""
    return uvicorn.Config(
        app,
        host=settings.listen_host,
        port=settings.listen_port,
        http=http_protocol(settings.limits.header_timeout),
        ws=WebSocketProtocol,
        limit_concurrency=settings.limits.max_connections,
        ws_max_size=MAX_WEBSOCKET_MESSAGE,
        ws_per_message_deflate=False,
        ws_ping_interval=settings.limits.ws_ping_interval,
        ws_ping_timeout=settings.limits.ws_ping_timeout,
        proxy_headers=True,
        forwarded_allow_ips=list(settings.forwarded_allow_ips),
        log_level=settings.log_level.value,
        # Our handlers, which redact credentials, serve uvicorn's loggers too.
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
