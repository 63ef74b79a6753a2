"""The least a browser-to-SSH bridge can be: asyncssh plus websockets, the baseline of footprint.

    .venv/bin/python -m bench.minimal_bridge --listen-port 8001 --host 127.0.0.1 --port 2222 \
        --user me --key-file KEY --known-hosts KNOWN_HOSTS --token-file TOKEN

Answers `/readyz`; on `/ws` with `Authorization: Bearer <token>` it opens one SSH connection
(key login, known_hosts verified), starts a login shell in a PTY and copies bytes both ways:
binary frames in are keystrokes, binary frames out are output. Nothing else (no protocol, no
resume, no flow control, no limits), so its memory and start-up are the floor for the job.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import http
import signal
from pathlib import Path

import asyncssh
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response


async def bridge(ws: ServerConnection, args: argparse.Namespace, key: asyncssh.SSHKey) -> None:
    """One WebSocket, one SSH login shell, bytes copied both ways until either side ends."""
    async with asyncssh.connect(
        args.host,
        port=args.port,
        username=args.user,
        client_keys=[key],
        known_hosts=str(args.known_hosts),
    ) as conn:
        process = await conn.create_process(
            term_type="xterm-256color", term_size=(80, 24), encoding=None
        )

        async def output() -> None:
            while data := await process.stdout.read(65536):
                await ws.send(data)

        pump = asyncio.create_task(output())
        try:
            async for message in ws:
                process.stdin.write(message.encode() if isinstance(message, str) else message)
        finally:
            pump.cancel()
            process.close()


async def main(args: argparse.Namespace) -> None:
    key = asyncssh.read_private_key(args.key_file)
    token = args.token_file.read_text().strip()
    expected = f"Bearer {token}".encode()

    def check(conn: ServerConnection, request: Request) -> Response | None:
        if request.path == "/readyz":
            return conn.respond(http.HTTPStatus.OK, "ok\n")
        if request.path != "/ws":
            return conn.respond(http.HTTPStatus.NOT_FOUND, "not found\n")
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            return conn.respond(http.HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        await bridge(ws, args, key)

    async with serve(
        handler, args.listen_host, args.listen_port, process_request=check, compression=None
    ) as server:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, server.close)
        await server.wait_closed()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=22)
    parser.add_argument("--user", required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--known-hosts", type=Path, required=True)
    parser.add_argument("--token-file", type=Path, required=True)
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
