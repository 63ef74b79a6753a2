"""A TCP forwarder from the machine's end of the node's link to the API server on 127.0.0.1.

The API server listens on loopback only, which the node's network namespace cannot reach; the
kubelet and kube-proxy connect to this forwarder instead (TLS passes through untouched: they
verify the API server's certificate and present their own).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            if writer.can_write_eof():
                writer.write_eof()
            else:
                writer.close()


async def serve(listen: tuple[str, int], target: tuple[str, int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        writer.close()
        up_writer.close()

    server = await asyncio.start_server(handle, *listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(listen_host: str, listen_port: int, target_port: int) -> None:
    asyncio.run(serve((listen_host, listen_port), ("127.0.0.1", target_port)))
