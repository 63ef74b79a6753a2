"""Session lifetime: idle timeout, maximum duration, resume grace, limits, graceful shutdown."""

from __future__ import annotations

import re
import signal

import httpx
import pytest

from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.support import poll
from tests.wsclient import connected, open_client

pytestmark = pytest.mark.anyio


async def test_idle_session_ends_with_a_reason(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd, idle_timeout=2)
    client = await connected(server)
    await client.until(lambda c: c.exit is not None, timeout=15)
    assert client.exit == {"exit_status": None, "reason": "idle timeout"}
    await client.until_closed()
    assert client.ws.close_code == 1000


async def test_input_keeps_a_session_alive_until_max_duration(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, idle_timeout=2, max_duration=4)
    client = await connected(server)
    # Typing every half second outlives the idle timeout; only the maximum duration ends it.
    n = 0
    while client.exit is None:
        await client.send_input(f"echo tick-{n}\r")
        try:
            await client.until(lambda c: c.exit is not None, timeout=0.5)
        except TimeoutError:
            n += 1
    assert n >= 5
    assert client.exit == {"exit_status": None, "reason": "maximum session duration reached"}


async def test_detached_session_is_dropped_after_the_grace_period(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, resume_grace=1)
    first = await connected(server)
    session_id, offset = first.session_id, first.offset
    await first.ws.close()
    poll(
        lambda: "session " + session_id + " closed" in server.log(),
        timeout=15,
        what="the detached session to be dropped",
    )
    second = await open_client(server.base_url, server.token)
    await second.hello(resume=(session_id, offset))
    await second.until_closed()
    assert second.error is not None
    assert second.error["code"] == "session_not_found"


async def test_session_limit_refuses_one_more(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd, max_sessions=1)
    first = await connected(server)
    second = await open_client(server.base_url, server.token)
    await second.hello()
    await second.until_closed()
    assert second.error is not None
    assert second.error["code"] == "too_many_sessions"
    assert second.ws.close_code == 1013
    await first.send_input("echo first-still-$((4+4))\r")
    await first.until_text("first-still-8")
    await first.ws.close()


async def test_sigterm_tells_clients_and_closes_ssh(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd)
    client = await connected(server)
    server.process.send_signal(signal.SIGTERM)
    await client.until(lambda c: c.exit is not None, timeout=15)
    assert client.exit == {"exit_status": None, "reason": "the terminal server is shutting down"}
    await client.until_closed()
    assert client.ws.close_code == 1000
    assert server.process.wait(15) == 0
    poll(
        lambda: "Close session" in sshd.log() or "Disconnected from" in sshd.log(),
        what="sshd to see the hang-up",
    )


def active_sessions(server: RunningServer) -> float:
    """The server's `ec2_terminal_active_sessions` gauge."""
    text = httpx.get(f"{server.origin}/metrics", timeout=5).text
    found = re.search(r"^ec2_terminal_active_sessions (\S+)$", text, re.MULTILINE)
    assert found, text
    return float(found.group(1))


async def test_clients_leaving_while_connecting_leak_no_session(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    """A tab closed during the SSH connect must not keep its slot past the grace period."""
    server = server_factory(sshd, max_sessions=2, resume_grace=1)
    for _ in range(8):
        client = await open_client(server.base_url, server.token)
        await client.hello()
        await client.until(lambda c: bool(c.statuses))  # "connecting": the SSH login is under way
        # Gone before the login finishes: the STATUS that names the session finds no socket.
        await client.ws.close()
    poll(
        lambda: active_sessions(server) == 0,
        timeout=20,
        what="every abandoned session to leave the registry",
    )
    client = await connected(server)
    await client.send_input("echo slot-free-$((2*3))\r")
    await client.until_text("slot-free-6")
    await client.ws.close()
