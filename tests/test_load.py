"""Load: 200 concurrent sessions on one server process against the local sshd, each typing and
reading for a bounded time, then again with one client among them that never reads."""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import pytest

from app.terminal.protocol import FrameType, encode
from tests.artifacts import record
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.rawws import Opcode, raw_session
from tests.serverstats import eventually, metric, problems_in, rss_mib, sessions_and_connections
from tests.wsclient import TerminalClient, connected

pytestmark = pytest.mark.anyio

SESSIONS = 200
ROUNDS = 3


async def open_sessions(server: RunningServer, count: int, batch: int = 20) -> list[TerminalClient]:
    """`count` sessions, opened `batch` at a time (sshd limits concurrent logins)."""
    clients: list[TerminalClient] = []
    while len(clients) < count:
        wave = min(batch, count - len(clients))
        clients += await asyncio.gather(*(connected(server) for _ in range(wave)))
    return clients


async def typist(client: TerminalClient, n: int, latencies: list[float]) -> None:
    """Type ROUNDS commands, a random pause apart, each answered before the next."""
    rng = random.Random(n)
    for round_ in range(ROUNDS):
        await asyncio.sleep(rng.uniform(0, 1))  # pacing, so the sessions do not type in step
        word = f"c{n}r{round_}"
        started = time.monotonic()
        await client.send_input(f"echo {word}-$((6*7))\r")
        await client.until_text(f"{word}-42", timeout=120)
        latencies.append(time.monotonic() - started)
        client.output.clear()


async def everyone_types(clients: list[TerminalClient]) -> dict[str, float]:
    """Every client types at once; echo latency p50 and p99 in ms."""
    latencies: list[float] = []
    await asyncio.gather(*(typist(c, n, latencies) for n, c in enumerate(clients)))
    assert len(latencies) == len(clients) * ROUNDS
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": round(cuts[49] * 1000, 1), "p99_ms": round(cuts[98] * 1000, 1)}


async def test_200_sessions_type_at_once_and_a_client_that_never_reads_harms_none(
    server_factory: ServerFactory, sshd: Sshd
) -> None:
    server = server_factory(sshd, max_sessions=SESSIONS + 1, resume_grace=1)
    before = rss_mib(server)
    clients = await open_sessions(server, SESSIONS)
    per_session_kib = (rss_mib(server) - before) * 1024 / SESSIONS
    alone = await everyone_types(clients)

    # One more client floods its session and never reads: flow control holds it at the window.
    stuck = await raw_session(server.port, server.token, receive_buffer=4096)
    stuck.send(Opcode.BINARY, encode(FrameType.INPUT, b"yes flood\r"))
    await stuck.flush()
    flooded = rss_mib(server)
    beside_stuck = await everyone_types(clients)
    growth = rss_mib(server) - flooded

    assert all(c.error is None and c.exit is None for c in clients)
    stuck.abort()
    await asyncio.gather(*(c.ws.close() for c in clients))
    await eventually(
        lambda: sessions_and_connections(server) == (0, 0), timeout=60, what="every session gone"
    )
    assert problems_in(server.log().splitlines()) == []
    stalled = metric(server, "ec2_terminal_flow_control_stall_seconds_total")
    assert stalled > 0, "the client that never reads was never held by flow control"
    assert growth < 32, f"the server grew {growth:.1f} MiB beside a client that never reads"
    record(
        "load",
        {
            "sessions": SESSIONS,
            "rounds_each": ROUNDS,
            "rss_per_session_kib": round(per_session_kib),
            "echo_alone": alone,
            "echo_beside_a_stuck_client": beside_stuck,
            "rss_growth_beside_stuck_mib": round(growth, 1),
        },
    )
