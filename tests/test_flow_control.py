"""End-to-end flow control and resume with large outputs from a real sshd."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import pytest

from app.terminal.protocol import MAX_CLIENT_FRAME, FrameType, encode
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import rss_bytes
from tests.wsclient import TerminalClient, connected, open_client

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WINDOW = 1024 * 1024
BEGIN, END = b"<<BEGIN>>", b"<<END>>"
# Printing the markers with split quotes keeps the shell's echo of the command from matching.
CAT = "stty -echo; printf '<<BEG''IN>>'; cat {path}; printf '<<E''ND>>'\r"


def payload_file(directory: Path, size: int) -> tuple[Path, str]:
    """`size` bytes of base64 text (no newlines: the PTY passes it unchanged), and its sha256."""
    data = base64.b64encode(os.urandom(size * 3 // 4))[:size]
    path = directory / "payload.b64"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def ended(output: bytearray) -> bool:
    """Whether the end marker has arrived (looking only at the tail: the output is large)."""
    return END in output[-64 * 1024 :]


def between_markers(output: bytes) -> bytes:
    start = output.index(BEGIN) + len(BEGIN)
    return output[start : output.index(END, start)]


async def read_until_quiet(client: TerminalClient, quiet: float) -> None:
    """Read frames until none arrives for `quiet` seconds (proves that output has stopped)."""
    while True:
        try:
            async with asyncio.timeout(quiet):
                await client.receive_one()
        except TimeoutError:
            return


async def test_unacknowledged_output_stops_at_the_window_and_resumes_intact(
    server: RunningServer, tmp_path: Path
) -> None:
    path, digest = payload_file(tmp_path, 64 * 1024 * 1024)
    client = await connected(server, auto_ack=False)
    rss_before = rss_bytes(server.pid)
    await client.ack()
    acked = client.offset
    await client.send_input(CAT.format(path=path))

    await client.until(lambda c: c.offset - acked >= WINDOW, timeout=60)
    await read_until_quiet(client, quiet=1.5)
    unacked = client.offset - acked
    assert WINDOW <= unacked <= WINDOW + 256 * 1024, f"{unacked} bytes in flight"
    grown = rss_bytes(server.pid) - rss_before
    assert grown < 24 * 1024 * 1024, f"server grew by {grown} bytes while the client lagged"

    client.auto_ack = True
    await client.ack()
    await client.until(lambda c: ended(c.output), timeout=180)
    received = between_markers(bytes(client.output))
    assert len(received) == path.stat().st_size
    assert hashlib.sha256(received).hexdigest() == digest
    assert rss_bytes(server.pid) - rss_before < 32 * 1024 * 1024
    await client.ws.close()


async def test_resume_after_a_dropped_socket_loses_and_repeats_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    path, digest = payload_file(tmp_path, 16 * 1024 * 1024)
    first = await connected(server)
    await first.send_input(CAT.format(path=path))
    await first.until(lambda c: c.offset > 4 * 1024 * 1024, timeout=60)
    session_id, offset = first.session_id, first.offset
    first.ws.transport.abort()  # a dropped network, not a polite close

    second = await open_client(server.base_url, server.token)
    second.offset = offset
    await second.hello(resume=(session_id, offset))
    await second.until(lambda c: ended(c.output), timeout=120)
    assert second.statuses[0]["state"] == "resumed"
    assert second.statuses[0]["session_id"] == session_id
    received = between_markers(bytes(first.output) + bytes(second.output))
    assert hashlib.sha256(received).hexdigest() == digest

    await second.send_input("stty echo; echo still-$((2+2))\r")
    await second.until_text("still-4")
    await second.ws.close()


async def test_resume_of_an_unknown_session_is_refused(server: RunningServer) -> None:
    client = await open_client(server.base_url, server.token)
    await client.hello(resume=("no-such-session", 0))
    await client.until_closed()
    assert client.error is not None
    assert client.error["code"] == "session_not_found"
    assert client.ws.close_code == 1008


async def test_a_second_connection_takes_the_session_over(server: RunningServer) -> None:
    first = await connected(server)
    second = await open_client(server.base_url, server.token)
    second.offset = first.offset
    await second.hello(resume=(first.session_id, first.offset))
    await second.until(lambda c: bool(c.statuses))
    await first.until_closed()
    assert first.ws.close_code == 1008
    await second.send_input("echo taken-$((3+3))\r")
    await second.until_text("taken-6")
    await second.ws.close()


async def test_a_large_paste_leaves_the_socket_responsive_and_arrives_whole(
    server_factory: ServerFactory, sshd: Sshd, tmp_path: Path
) -> None:
    # At 32 KiB/s the paste takes ten seconds to reach the remote side; meanwhile PING (and
    # ACK) frames sent after it must be answered, or the page would give up on the socket.
    rate, size = 32 * 1024, 320 * 1024
    server = server_factory(sshd, input_rate=rate)
    client = await connected(server)
    target = tmp_path / "pasted"
    await client.send_input(f"stty -echo; cat > {target}; wc -c < {target}\r")
    line = b"x" * 1023 + b"\n"  # canonical mode holds at most 4 KiB per line
    paste = line * (size // len(line))
    step = MAX_CLIENT_FRAME - 1  # the limit counts the frame's type byte
    for start in range(0, size, step):
        await client.send_input(paste[start : start + step])
    await client.ws.send(encode(FrameType.PING, b"ping"))
    await client.until(lambda c: c.pongs == [b"ping"], timeout=size / rate / 2)
    await client.send_input(b"\x04")
    await client.until_text(str(size), timeout=60)
    assert target.stat().st_size == size
    await client.ws.close()


async def read_like_the_page(client: TerminalClient, timeout: float) -> None:
    """Read until the end marker, ACKing every 64 KiB as the page does (a client that keeps up)."""
    client.auto_ack, client.keep_output = False, False
    tail = bytearray()
    acked = client.offset
    async with asyncio.timeout(timeout):
        while END not in tail:
            if await client.receive_one() is FrameType.OUTPUT:
                tail += client.last_chunk
                del tail[: max(0, len(tail) - 64)]
                if client.offset - acked >= 64 * 1024:
                    acked = client.offset
                    await client.ack()
    await client.ack()


async def test_a_fast_transfer_gives_its_memory_back(server: RunningServer, tmp_path: Path) -> None:
    """The heap holes a fast transfer leaves behind go back to the system once output stops.

    Live data stays within the flow window, but glibc kept the freed buffers resident (RSS
    grew by 20 to 90 MiB per 256 MiB and stayed so after the session closed).
    """
    path, _ = payload_file(tmp_path, 256 * 1024 * 1024)
    client = await connected(server)
    await client.send_input("stty -echo; echo ready-$((6*7))\r")
    await client.until_text("ready-42")
    rss_before = rss_bytes(server.pid)
    await client.send_input(CAT.format(path=path))
    await read_like_the_page(client, timeout=300)
    grown_after_transfer = rss_bytes(server.pid) - rss_before
    await client.send_input("exit\r")
    await client.until_closed()

    bound = 12 * 1024 * 1024
    deadline = asyncio.get_running_loop().time() + 15
    while (grown := rss_bytes(server.pid) - rss_before) >= bound:
        if asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.2)
    assert grown < bound, (
        f"the server kept {grown >> 20} MiB after the transfer "
        f"({grown_after_transfer >> 20} MiB right after it)"
    )
