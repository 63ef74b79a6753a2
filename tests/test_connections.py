"""Connection-level defences: the header-read deadline and the connection cap."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Iterator

import httpx

from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd


@contextlib.contextmanager
def sockets(server: RunningServer, count: int) -> Iterator[list[socket.socket]]:
    """`count` TCP connections to the server, closed afterwards."""
    opened = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(count)]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has ended this connection (whatever it wrote before)."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        while data := sock.recv(4096, socket.MSG_DONTWAIT):
            del data
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return True


def dribble_until_closed(dribblers: list[socket.socket], timeout: float) -> float:
    """Send one header byte a second on each socket, slowloris style, until the server closes
    them all; returns how long that took."""
    started = time.monotonic()
    for sock in dribblers:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    while time.monotonic() - started < timeout:
        open_ones = [s for s in dribblers if not closed_by_server(s)]
        if not open_ones:
            return time.monotonic() - started
        for sock in open_ones:
            with contextlib.suppress(OSError):
                sock.send(b"a")
        select.select(open_ones, [], [], 1.0)
    raise AssertionError(
        f"{len(open_ones)} of {len(dribblers)} slow-header connections were still open "
        f"after {timeout} s"
    )


def test_connections_that_dribble_headers_are_closed_and_others_still_served(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, header_timeout=2, max_connections=100)
    with sockets(server, 60) as dribblers:
        took = dribble_until_closed(dribblers, timeout=15)
        assert took >= 1.5, "closed before the deadline"
        assert httpx.get(f"{server.origin}/readyz", timeout=5).status_code == 200
    # An idle connection that never sends a byte is closed too.
    with sockets(server, 1) as [silent]:
        silent.settimeout(15)
        assert silent.recv(4096).startswith(b"HTTP/1.1 408")
    assert "Traceback" not in server.log()


def test_connections_beyond_the_cap_get_503(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd, header_timeout=3, max_connections=20)
    with sockets(server, 20) as held:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # unfinished
        with sockets(server, 3) as extra:
            for sock in extra:
                sock.settimeout(5)
                assert sock.recv(4096).startswith(b"HTTP/1.1 503"), "over the cap"
        response = httpx.get(f"{server.origin}/healthz", timeout=5)
        assert response.status_code == 503
    # The held connections time out or close; then the server serves again.
    deadline = time.monotonic() + 15
    while httpx.get(f"{server.origin}/healthz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the server never recovered from the cap"
        time.sleep(0.1)
