"""Property tests of the `ec2-terminal.v1` parser, and of the bridge's state machine driven by
generated frame sequences in process (the live server gets the same frames in
tests/test_fuzz_server.py).

A parser answers any input with a value or a TerminalError (ERROR frame and close code),
never with another exception; the bridge answers any sequence within a bounded time, never
with `internal_error`, and leaves its session resumable.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import FrameTooLarge, ProtocolViolation, TerminalError
from app.metrics import Metrics
from app.settings import Limits
from app.terminal.bridge import Bridge
from app.terminal.closecodes import CloseCode
from app.terminal.ports import OutputSink, RemoteFile, SocketClosed
from app.terminal.protocol import (
    CLIENT_FRAMES,
    MAX_CLIENT_FRAME,
    MAX_OFFSET,
    MAX_TERMINAL_SIDE,
    FrameType,
    decode,
    encode_ack,
    encode_resize,
    parse_ack,
    parse_hello,
    parse_resize,
)
from app.terminal.registry import SessionRegistry
from app.terminal.types import ExitInfo, Size
from app.transfer.errors import SftpUnavailable
from tests.artifacts import record
from tests.fuzzing import HELLO_PAYLOADS, MESSAGES, U16, U64, fuzz_settings, hello

Counts = dict[str, int]


@pytest.fixture(scope="module")
def counts() -> Iterator[Counts]:
    """Examples run per property, written to test-artifacts/reliability.json."""
    examples: Counts = {}
    yield examples
    record("fuzz_protocol", {"examples": examples})


def count(counts: Counts, name: str) -> None:
    counts[name] = counts.get(name, 0) + 1


@fuzz_settings(2000)
@given(st.binary(max_size=MAX_CLIENT_FRAME + 8) | st.binary(max_size=40))
def test_decode_returns_a_client_frame_or_refuses(counts: Counts, data: bytes) -> None:
    count(counts, "decode")
    try:
        frame = decode(data)
    except FrameTooLarge:
        assert len(data) > MAX_CLIENT_FRAME
    except ProtocolViolation:
        assert not data or data[0] not in CLIENT_FRAMES
    else:
        assert frame.type in CLIENT_FRAMES
        assert bytes([frame.type]) + frame.payload == data


@fuzz_settings(2000)
@given(HELLO_PAYLOADS)
def test_parse_hello_returns_a_valid_hello_or_refuses(counts: Counts, payload: bytes) -> None:
    count(counts, "parse_hello")
    try:
        hello = parse_hello(payload)
    except ProtocolViolation:
        return
    assert 1 <= hello.size.cols <= MAX_TERMINAL_SIDE
    assert 1 <= hello.size.rows <= MAX_TERMINAL_SIDE
    if hello.resume is not None:
        assert isinstance(hello.resume.session_id, str)
        assert 0 < len(hello.resume.session_id) <= 128
        assert 0 <= hello.resume.offset <= MAX_OFFSET
    assert len(payload) <= 1024


@fuzz_settings(1000)
@given(U16, U16)
def test_resize_accepts_exactly_the_sizes_in_range(counts: Counts, cols: int, rows: int) -> None:
    count(counts, "resize")
    payload = struct.pack(">HH", cols, rows)
    if 1 <= cols <= MAX_TERMINAL_SIDE and 1 <= rows <= MAX_TERMINAL_SIDE:
        assert parse_resize(payload) == Size(cols, rows)
        assert decode(encode_resize(Size(cols, rows))).payload == payload
    else:
        with pytest.raises(ProtocolViolation, match="terminal size"):
            parse_resize(payload)


@fuzz_settings(1000)
@given(st.binary(max_size=12), U64)
def test_short_payloads_are_refused_and_every_u64_ack_reads_back(
    counts: Counts, junk: bytes, offset: int
) -> None:
    count(counts, "ack_resize_payloads")
    if len(junk) != 4:
        with pytest.raises(ProtocolViolation, match="RESIZE payload"):
            parse_resize(junk)
    if len(junk) != 8:
        with pytest.raises(ProtocolViolation, match="ACK payload"):
            parse_ack(junk)
    assert parse_ack(decode(encode_ack(offset)).payload) == offset


# --- the bridge in process: a scripted socket and an echoing terminal ----------------------


class EchoTerminal:
    """A remote terminal that echoes input, as a shell in a PTY with echo on does."""

    host_key_sha256 = "SHA256:fuzz"

    def __init__(self, sink: OutputSink) -> None:
        self.sink = sink
        self.paused = False
        self.closed = False

    def write(self, data: bytes) -> None:
        self.sink.feed(data)

    async def drain(self) -> None:
        await asyncio.sleep(0)

    def writable(self) -> bool:
        return True

    def resize(self, size: Size) -> None:
        self.sink.feed(f"[{size.cols}x{size.rows}]".encode())

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sink.ended(ExitInfo(None, "hung up"))

    def files(self) -> NoFiles:
        return NoFiles()


class NoFiles:
    """A target without SFTP: the frames under test never move files."""

    async def upload(
        self, path: str, body: AsyncIterator[bytes], *, overwrite: bool, limit: int
    ) -> str:
        raise SftpUnavailable("no SFTP here")

    async def download(self, path: str, limit: int) -> RemoteFile:
        raise SftpUnavailable("no SFTP here")


class EchoConnector:
    async def open(self, size: Size, sink: OutputSink) -> EchoTerminal:
        sink.feed(b"welcome\r\n")
        return EchoTerminal(sink)


@dataclass
class ScriptedSocket:
    """Delivers a script of client messages, then the client leaves; records what it got."""

    script: list[bytes | str]
    sent: list[bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    async def receive(self) -> bytes:
        await asyncio.sleep(0)  # let output flow between client frames
        if not self.script:
            raise SocketClosed("the script ended")
        message = self.script.pop(0)
        if isinstance(message, str):
            raise ProtocolViolation("text frames are not part of ec2-terminal.v1; send binary")
        return message

    async def send(self, data: bytes) -> None:
        if self.closed:
            raise SocketClosed
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def frames(self, kind: FrameType) -> list[bytes]:
        return [f[1:] for f in self.sent if f[0] == kind]


ALLOWED_CLOSES = {CloseCode.NORMAL, CloseCode.POLICY_VIOLATION, CloseCode.MESSAGE_TOO_BIG}


def check_outcome(socket: ScriptedSocket) -> None:
    """An ERROR says what the client did wrong, with its close code; never a server fault."""
    errors = [json.loads(e) for e in socket.frames(FrameType.ERROR)]
    assert len(errors) <= 1, errors
    for error in errors:
        assert error["code"] != TerminalError.code, error
        assert socket.closed is not None
        assert socket.closed[0] in ALLOWED_CLOSES, socket.closed
    if socket.closed is not None:
        assert len(socket.closed[1].encode()) <= 123


async def drive(
    first: list[bytes | str], second: list[bytes | str], resume_at: int
) -> ScriptedSocket:
    """A new session driven by `first`, then resumed from `resume_at` and driven by `second`;
    returns the first socket."""
    metrics = Metrics()
    limits = Limits(hello_timeout=1, flow_window=4096, replay_buffer=8192, input_rate=10**9)
    registry = SessionRegistry(EchoConnector(), limits, metrics)
    opener = ScriptedSocket([hello({"cols": 80, "rows": 24}), *first])
    async with asyncio.timeout(10):
        await Bridge(opener, registry, metrics).run()
    check_outcome(opener)
    statuses = [json.loads(s) for s in opener.frames(FrameType.STATUS)]
    assert statuses[:2] == [{"state": "connecting"}, statuses[1]]
    session_id = statuses[1]["session_id"]
    assert len(registry) == 1, "a dropped or refused socket leaves its session for a resume"

    body = {"cols": 80, "rows": 24, "resume": {"id": session_id, "offset": resume_at}}
    resumer = ScriptedSocket([hello(body), *second])
    async with asyncio.timeout(10):
        await Bridge(resumer, registry, metrics).run()
    check_outcome(resumer)
    session = registry.get(session_id)
    if not session.buffer.start <= resume_at <= session.buffer.end:
        assert json.loads(resumer.frames(FrameType.ERROR)[0])["code"] == "output_lost"
    async with asyncio.timeout(10):
        await registry.shutdown("fuzzing done", patience=5)
    assert len(registry) == 0
    sample = metrics.registry.get_sample_value
    assert sample("ec2_terminal_active_connections") == 0
    assert not sample("ec2_terminal_errors_total", {"code": TerminalError.code})
    return opener


@fuzz_settings(400)
@given(st.lists(MESSAGES, max_size=8), st.lists(MESSAGES, max_size=8), U64 | st.integers(0, 64))
def test_any_frame_sequence_gets_a_clear_answer_and_spares_the_session(
    counts: Counts, first: list[bytes | str], second: list[bytes | str], resume_at: int
) -> None:
    count(counts, "bridge_sequences")
    asyncio.run(drive(first, second, resume_at))


@fuzz_settings(300)
@given(st.lists(st.sampled_from([0, 1, 5, 9, 10, 4096, 10**6, 2**64 - 1]), max_size=10))
def test_acks_beyond_and_backwards(counts: Counts, acks: list[int]) -> None:
    """ACKs beyond what was sent are refused; repeated or backwards ones change nothing."""
    count(counts, "acks")
    opener = asyncio.run(drive([encode_ack(a) for a in acks], [], 0))
    errors = [json.loads(e) for e in opener.frames(FrameType.ERROR)]
    if any(a >= 4096 for a in acks):  # far more than the few bytes of output sent
        assert errors, "an ACK beyond the output sent is refused"
        assert errors[0]["code"] == "protocol_error"
        assert errors[0]["message"].startswith("ACK of byte")
    elif all(a == 0 for a in acks):
        assert errors == []
