"""Dropped and stuck browser sockets: the keepalive cuts them, says why, and the log tells
a session's life in a few INFO lines with its id (never a token, never library chatter)."""

from __future__ import annotations

import subprocess

import pytest

from app.terminal.protocol import FrameType, encode
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.rawws import Opcode, raw_session
from tests.serverstats import eventually, metric, problems_in
from tests.support import CLI, env_without_proxies
from tests.wsclient import connected, open_client

pytestmark = pytest.mark.anyio


def attached(server: RunningServer) -> float:
    return metric(server, "ec2_terminal_active_connections")


async def test_a_client_that_stops_reading_is_cut_by_the_keepalive_and_told_why(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, ws_ping_interval=1, ws_ping_timeout=2)
    stuck = await raw_session(server.port, server.token, receive_buffer=4096)
    session_id = stuck.session_id
    # A flood the client never reads: the flow window stops it at 1 MiB unacknowledged.
    stuck.send(Opcode.BINARY, encode(FrameType.INPUT, b"yes flood\r"))
    await stuck.flush()
    await eventually(
        lambda: attached(server) == 0, timeout=30, what="the keepalive to cut the stuck socket"
    )
    cut = f"session {session_id}: connection closed: no answer to the keepalive ping within 2 s"
    await eventually(lambda: cut in server.log(), timeout=10, what="the log line saying why")

    # Reading at last, the client finds the close frame with the reason behind the output.
    frames = await stuck.read_until_closed(timeout=30)
    assert frames, "the output sent before the cut is delivered"
    assert stuck.closes == [(1011, "no answer to the keepalive ping within 2 s")]

    # The session outlived its socket: resume it, stop the flood, and use it.
    again = await open_client(server.base_url, server.token, keep_output=False)
    await again.hello(resume=(session_id, 0))
    await again.until(lambda c: any(s["state"] == "resumed" for s in c.statuses))
    await again.send_input("\x03")
    again.keep_output = True
    await again.send_input("echo after-the-cut-$((6*7))\r")
    await again.until_text("after-the-cut-42", timeout=60)
    await again.ws.close()
    assert problems_in(server.log().splitlines()) == []


async def test_a_client_that_reads_but_never_answers_pings_gets_a_close_with_the_reason(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, ws_ping_interval=1, ws_ping_timeout=1)
    raw = await raw_session(server.port, server.token)
    frames = await raw.read_until_closed(timeout=20)
    assert any(opcode == Opcode.PING for opcode, _ in frames)
    assert raw.closes == [(1011, "no answer to the keepalive ping within 1 s")]
    await eventually(
        lambda: "connection closed: no answer to the keepalive ping within 1 s" in server.log(),
        what="the log line",
    )


async def test_a_client_that_answers_pings_stays(server_factory: ServerFactory, sshd: Sshd) -> None:
    server = server_factory(sshd, ws_ping_interval=0.5, ws_ping_timeout=1)
    client = await connected(server)  # the websockets library answers every ping
    for n in range(4):
        await client.send_input(f"echo alive-$(({n}+100))\r")
        await client.until_text(f"alive-{n + 100}")
        with pytest.raises(TimeoutError):
            await client.until(lambda c: False, timeout=1)
    await client.ws.close()
    assert "keepalive" not in server.log()


def test_keepalive_settings_must_be_positive() -> None:
    for flag in ("--ws-ping-interval", "--ws-ping-timeout"):
        done = subprocess.run(
            [CLI, "serve", flag, "0"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env_without_proxies(),
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert f"{flag} must be positive" in done.stderr
        assert "Traceback" not in done.stderr


def session_story(log: str, session_id: str) -> list[str]:
    """The logger and message of every line naming the session, timestamps cut."""
    story = []
    for line in log.splitlines():
        if session_id in line:
            _, _, level, logger, message = line.split(" ", 4)
            story.append(f"{level} {logger} {message}")
    return story


async def test_the_log_of_a_sessions_life_at_the_default_level(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd)
    first = await connected(server)
    session_id = first.session_id
    await first.send_input("echo typed-$((3*3))\r")
    await first.until_text("typed-9")
    first.ws.transport.abort()
    await eventually(
        lambda: "connection closed: the connection dropped" in server.log(), what="the drop"
    )

    second = await open_client(server.base_url, server.token, keep_output=False)
    second.offset = first.offset
    await second.hello(resume=(session_id, first.offset))
    await second.until(lambda c: any(s["state"] == "resumed" for s in c.statuses))
    third = await open_client(server.base_url, server.token, keep_output=False)
    third.offset = first.offset
    await third.hello(resume=(session_id, first.offset))
    await third.until(lambda c: any(s["state"] == "resumed" for s in c.statuses))
    await second.until_closed()
    await third.send_input("exit\r")
    await third.until_closed()
    await eventually(
        lambda: f"session {session_id} closed" in server.log(), what="the session's end"
    )

    app = "INFO app.terminal"
    offset = first.offset
    story = session_story(server.log(), session_id)
    assert story[:7] == [
        f"{app}.registry session {session_id} started",
        f"{app}.bridge session {session_id}: connection opened (80x24)",
        f"{app}.bridge session {session_id}: connection closed: the connection dropped",
        f"{app}.bridge session {session_id}: connection resumed from byte {offset}",
        f"{app}.bridge session {session_id}: connection resumed from byte {offset}, "
        "taking it over from another connection",
        f"{app}.bridge session {session_id}: connection closed: taken over by another connection",
        f"{app}.session session {session_id} ended: the remote shell exited (status 0)",
    ]
    # The last socket and the session wind down concurrently: either line may come first.
    assert sorted(story[7:]) == [
        f"{app}.bridge session {session_id}: connection closed: "
        "EXIT delivered (the remote shell exited)",
        f"{app}.registry session {session_id} closed",
    ]
    log = server.log()
    assert " asyncssh " not in log, "asyncssh's INFO chatter is quiet at the default level"
    assert "uvicorn.error connection open" not in log
    assert problems_in(log.splitlines()) == []
    # Everything the server said about this session, its three sockets and the SSH login.
    after_start = log[log.index("Application startup complete") :]
    lines = [line for line in after_start.splitlines() if "/metrics" not in line]
    assert len(lines) <= 16, "\n".join(lines)
