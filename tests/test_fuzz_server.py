"""Generated frames against the live server (real sshd): every message gets the answer the
protocol promises, nothing crashes or hangs, the log stays quiet, a session in another
thread keeps echoing throughout, and memory and descriptors return to their baseline.

The frames come from tests/fuzzing.py; typed input is letters only (a real shell reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from app.errors import TerminalError
from app.terminal.protocol import FrameType, decode, encode, parse_hello
from tests.artifacts import record
from tests.bystander import Bystander
from tests.fixtures_server import RunningServer, ServerFactory
from tests.fixtures_sshd import Sshd
from tests.fuzzing import LIVE_MESSAGES, fuzz_settings, hello
from tests.rawws import Opcode, RawWebSocket
from tests.serverstats import open_descriptors, problems_in, rss_mib, sessions_and_connections
from tests.support import memory_kib, poll
from tests.wsclient import TerminalClient, connected, open_client

pytestmark = pytest.mark.slow

# Close codes a client may get for what it sent; 1011 would be a server fault.
CLIENT_FAULT_CLOSES = {1000, 1002, 1007, 1008, 1009}
# Log lines one example may add: the accepted upgrade, the refusal or a session's few lines.
MAX_LINES_PER_EXAMPLE = 8
MEMORY_SLACK_MIB = 48
BACKGROUND = re.compile(r"session \S+ (ended: client did not come back.*|closed)$")


@dataclass
class Rig:
    """A server under fuzzing, the sessions examples aim at, and what it looked like before."""

    server: RunningServer
    victim: str
    victim_end: int
    expired: str
    foreign: str
    baseline_rss: float = 0.0
    baseline_fds: int = 0
    line_counts: list[int] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def settle(self) -> None:
        """Take the baseline: memory and descriptors with the fixture's sessions open."""
        self.baseline_rss = rss_mib(self.server)
        self.baseline_fds = open_descriptors(self.server.pid)

    def back_to_baseline(self) -> dict[str, float]:
        """Wait until every session has ended; then memory and descriptors are back."""
        poll(
            lambda: sessions_and_connections(self.server) == (0, 0),
            timeout=90,
            what="every session to end (the resume grace) and every connection to close",
        )
        poll(
            lambda: open_descriptors(self.server.pid) <= self.baseline_fds + 4,
            timeout=30,
            what=f"descriptors back to {self.baseline_fds} (now "
            f"{open_descriptors(self.server.pid)})",
        )
        growth = rss_mib(self.server) - self.baseline_rss
        assert growth < MEMORY_SLACK_MIB, f"RSS grew {growth:.1f} MiB"
        return {"rss_growth_mib": round(growth, 1), "rss_baseline_mib": round(self.baseline_rss)}


async def quiet_victim(server: RunningServer) -> tuple[str, int]:
    """A session whose shell swallows input silently, left detached for examples to resume."""
    client = await connected(server)
    await client.send_input("stty raw -echo; cat > /dev/null\r")
    await client.until_text("/dev/null")
    with contextlib.suppress(TimeoutError):
        await client.until(lambda c: False, timeout=1)  # the output settles
    await client.ws.close()
    return client.session_id, client.offset


async def ended_session(server: RunningServer) -> str:
    client = await connected(server)
    await client.send_input("exit\r")
    await client.until_closed()
    return client.session_id


@pytest.fixture
def rig(server_factory: ServerFactory, sshd: Sshd) -> Rig:
    server = server_factory(sshd, resume_grace=15, max_sessions=250, hello_timeout=3)
    elsewhere = server_factory(sshd)

    async def prepare() -> Rig:
        victim, end = await quiet_victim(server)
        foreign = await connected(elsewhere)
        await foreign.ws.close()
        return Rig(server, victim, end, await ended_session(server), foreign.session_id)

    return asyncio.run(prepare())


def expected_first(rig: Rig, message: bytes | str) -> str:
    """What the server must answer to a first message: an ERROR code, or a STATUS state."""
    if isinstance(message, str):
        return "protocol_error"
    try:
        frame = decode(message)
        if frame.type is not FrameType.HELLO:
            return "protocol_error"
        parsed = parse_hello(frame.payload)
    except TerminalError as refused:
        return refused.code
    if parsed.resume is None:
        return "connecting"
    if parsed.resume.session_id != rig.victim:
        return "session_not_found"
    # The victim's buffer holds all its output so far: bytes 0 to its end.
    return "resumed" if parsed.resume.offset <= rig.victim_end else "output_lost"


async def play(rig: Rig, messages: list[bytes | str]) -> str:
    """Send the messages on a fresh connection, read the answers; returns the first answer:
    a STATUS state or an ERROR code."""
    client = await open_client(rig.server.base_url, rig.server.token, auto_ack=False)
    client.offset = _replay_from(rig, messages[0])
    client.keep_output = False
    first = "nothing"
    try:
        for message in messages:
            await client.ws.send(message)
        await client.until(lambda c: c.error is not None or bool(c.statuses), timeout=30)
        first = str(client.statuses[0]["state"] if client.statuses else client.error["code"])  # type: ignore[index]
        with contextlib.suppress(TimeoutError):
            await client.until(lambda c: False, timeout=0.3)
    except ConnectionClosed:
        pass
    finally:
        await client.ws.close()
    code = client.ws.close_code
    if client.error is not None:
        assert client.error["code"] != TerminalError.code, client.error
        assert code in CLIENT_FAULT_CLOSES, (code, client.ws.close_reason)
    assert code is None or code in CLIENT_FAULT_CLOSES, (code, client.ws.close_reason)
    return first


def _replay_from(rig: Rig, message: bytes | str) -> int:
    """Where the output of this connection starts: a resume's offset, else 0."""
    if expected_first(rig, message) != "resumed":
        return 0
    assert isinstance(message, bytes)
    resume = parse_hello(message[1:]).resume
    assert resume is not None
    return resume.offset


# The first message: anything, or a HELLO that resumes a session (most often the victim from
# a valid offset: the frames after it meet a live session), or starts a new one.
FIRST_KINDS = st.sampled_from(["any", "victim", "victim", "victim", "resume", "new"])
RESUMES = st.tuples(
    st.sampled_from(["victim", "expired", "foreign", "unknown"]),
    st.sampled_from(["end", 0, 1, 2**64 - 1]),
)


def first_message(
    rig: Rig, kind: str, anything: bytes | str, resume: tuple[str, Any]
) -> bytes | str:
    """The drawn first message of one example."""
    if kind == "any":
        return anything
    if kind == "new":
        return hello({"cols": 80, "rows": 24})
    which, offset = ("victim", "end") if kind == "victim" else resume
    ids = {"victim": rig.victim, "expired": rig.expired, "foreign": rig.foreign, "unknown": "x"}
    at = rig.victim_end if offset == "end" else offset
    return hello({"cols": 80, "rows": 24, "resume": {"id": ids[which], "offset": at}})


def test_generated_frame_sequences_get_their_answers_and_harm_nothing(rig: Rig) -> None:
    with Bystander(rig.server) as bystander:
        rig.settle()

        @fuzz_settings(200)
        @given(FIRST_KINDS, LIVE_MESSAGES, RESUMES, st.lists(LIVE_MESSAGES, max_size=6))
        def example(
            kind: str, anything: bytes | str, resume: tuple[str, Any], rest: list[bytes | str]
        ) -> None:
            first = first_message(rig, kind, anything, resume)
            before = len(rig.server.log().splitlines())
            got = asyncio.run(asyncio.wait_for(play(rig, [first, *rest]), timeout=60))
            assert got == expected_first(rig, first), (first[:80], got)
            rig.outcomes[got] = rig.outcomes.get(got, 0) + 1
            added = rig.server.log().splitlines()[before:]
            assert problems_in(added) == [], added
            # Sessions of earlier examples end in the meantime, after their resume grace.
            added = [line for line in added if not BACKGROUND.search(line)]
            rig.line_counts.append(len(added))
            assert len(added) <= MAX_LINES_PER_EXAMPLE, added

        example()
    bystander.check(at_least=3)
    figures = rig.back_to_baseline()
    record(
        "fuzz_server",
        {
            "examples": len(rig.line_counts),
            "answers": rig.outcomes,
            "log_lines_per_example_max": max(rig.line_counts),
            "bystander_round_trips": len(bystander.latencies),
            **figures,
        },
    )
    assert "Traceback" not in rig.server.log()


async def send_huge(rig: Rig, message: Any) -> TerminalClient:
    """Send a message far over the limit; the server must cut it off while it arrives."""
    client = await open_client(rig.server.base_url, rig.server.token)
    with contextlib.suppress(ConnectionClosed, ConnectionError):
        await client.ws.send(message)
    await client.until_closed(timeout=60)
    return client


FIFTY_MIB = 50 * 2**20


def test_a_50_mib_message_is_cut_off_while_it_arrives(rig: Rig) -> None:
    peak_before = memory_kib(rig.server.pid, "VmHWM") / 1024
    chunk = encode(FrameType.INPUT, b"a" * (64 * 1024 - 1))
    fragments = (chunk for _ in range(FIFTY_MIB // len(chunk)))
    with Bystander(rig.server) as bystander:
        rig.settle()
        for message in (
            encode(FrameType.INPUT, b"a" * FIFTY_MIB),  # one frame
            fragments,  # one message in 800 fragments of 64 KiB
            "a" * FIFTY_MIB,  # a text frame
        ):
            client = asyncio.run(send_huge(rig, message))
            assert client.ws.close_code == 1009, client.ws.close_reason
            assert client.error is None, "refused before it was read whole: no ERROR frame"
    bystander.check()
    peak_growth = memory_kib(rig.server.pid, "VmHWM") / 1024 - peak_before
    assert peak_growth < 40, f"the peak RSS grew {peak_growth:.0f} MiB: a message was buffered"
    record("fuzz_50mib", {"peak_rss_growth_mib": round(peak_growth, 1), **rig.back_to_baseline()})


async def open_and_close(rig: Rig, n: int) -> None:
    """One of five ways to arrive and leave at once, by `n`."""
    port = rig.server.port
    auth = {"Authorization": f"Bearer {rig.server.token}"}
    kind = n % 5
    if kind == 0:  # upgrade, then close at once
        raw = await RawWebSocket.connect(port, headers=auth)
        raw.send(Opcode.CLOSE, b"\x03\xe8")
    elif kind == 1:  # resume the victim and leave without a word
        raw = await RawWebSocket.connect(port, headers=auth)
        body = {"cols": 80, "rows": 24, "resume": {"id": rig.victim, "offset": rig.victim_end}}
        raw.send(Opcode.BINARY, hello(body))
    elif kind == 2:  # a request cut off inside its headers
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
        await writer.drain()
        writer.transport.abort()
        return
    elif kind == 3:  # a frame header cut short
        raw = await RawWebSocket.connect(port, headers=auth)
        raw.send_raw(b"\x82\xfe\x01")
    elif n % 50 == 4:  # a new session, abandoned while its SSH login runs
        raw = await RawWebSocket.connect(port, headers=auth)
        raw.send(Opcode.BINARY, hello({"cols": 80, "rows": 24}))
    else:  # a TCP connection that says nothing
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.transport.abort()
        return
    await raw.flush()
    raw.abort()


async def cycles(rig: Rig, count: int, parallel: int) -> None:
    for start in range(0, count, parallel):
        batch = [open_and_close(rig, n) for n in range(start, min(count, start + parallel))]
        async with asyncio.timeout(60):
            await asyncio.gather(*batch)


def test_500_rapid_open_close_cycles_leak_nothing(rig: Rig) -> None:
    with Bystander(rig.server) as bystander:
        rig.settle()
        before = len(rig.server.log().splitlines())
        asyncio.run(cycles(rig, 500, parallel=10))
    bystander.check()
    figures = rig.back_to_baseline()
    added = rig.server.log().splitlines()[before:]
    assert problems_in(added) == [], added[:20]
    record("fuzz_open_close", {"cycles": 500, "log_lines": len(added), **figures})
