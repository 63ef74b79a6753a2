"""asyncssh's receive buffer without copies: it must behave as the bytes it replaces.

Every SSH test reads through it (the session server installs it on each connection); these
check the slicing asyncssh does against plain bytes, packet by packet.
"""

from __future__ import annotations

import os

from app.ssh.readbuffer import ReadBuffer


def test_parsing_packets_as_asyncssh_does_gives_what_bytes_give() -> None:
    reads = [os.urandom(n) for n in (3, 4096, 70000, 1, 0, 262144, 5000)]
    plain: bytes = b""
    buffer = ReadBuffer()
    for chunk in reads:
        plain += chunk
        buffer += chunk
        # Header then body, as _recv_pkthdr and _recv_packet slice them, while enough is there.
        while len(plain) >= 16 + 4000:
            assert buffer[:16] == plain[:16]
            assert isinstance(buffer[:16], bytes)
            plain, buffer = plain[16:], buffer[16:]
            assert buffer[: 4000 - 16] == plain[: 4000 - 16]
            assert buffer[4000 - 16 : 4000] == plain[4000 - 16 : 4000]
            plain, buffer = plain[4000:], buffer[4000:]
            assert len(buffer) == len(plain)
            assert bool(buffer) == bool(plain)
    assert bytes(buffer) == plain


def test_the_rest_is_a_view_until_more_arrives() -> None:
    read = os.urandom(100_000)
    buffer = ReadBuffer()
    buffer += read
    rest = buffer[90_000:]
    assert isinstance(rest, ReadBuffer)
    assert len(rest) == 10_000
    assert rest[:10] == read[90_000:90_010]
    rest += b"more"
    assert bytes(rest) == read[90_000:] + b"more"
    assert bytes(buffer) == read  # the view never changed what it came from


def test_edges_behave_as_bytes() -> None:
    data = b"SSH-2.0-OpenSSH_9.2\r\nrest"
    buffer = ReadBuffer()
    buffer += data
    assert buffer.find(b"\n") == data.find(b"\n")
    assert buffer[5:].find(b"\n", 0, 8) == data[5:].find(b"\n", 0, 8)
    assert buffer[-4:] == data[-4:]
    assert buffer[0] == data[0]
    assert buffer[::2] == data[::2]
    assert buffer[100:] == b""
    assert not buffer[100:]
    assert buffer[3:1000] == data[3:1000]
    empty = ReadBuffer()
    assert not empty
    assert len(empty) == 0
    assert empty == b""
