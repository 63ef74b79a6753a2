"""Unit tests of frame encoding and the replay buffer (the end-to-end tests use real sockets)."""

from __future__ import annotations

import pytest

from app.errors import FrameTooLarge, OutputLost, ProtocolViolation
from app.terminal.protocol import (
    MAX_CLIENT_FRAME,
    FrameType,
    Resume,
    decode,
    decode_output,
    encode,
    encode_ack,
    encode_output,
    encode_resize,
    parse_ack,
    parse_hello,
    parse_resize,
)
from app.terminal.replay import ReplayBuffer
from app.terminal.types import Size


def test_round_trips() -> None:
    assert parse_resize(decode(encode_resize(Size(1000, 1))).payload) == Size(1000, 1)
    assert parse_ack(decode(encode_ack(2**64 - 1)).payload) == 2**64 - 1
    assert decode_output(encode_output(7, b"abc")[1:]) == (7, b"abc")
    hello = parse_hello(b'{"cols": 80, "rows": 24, "resume": {"id": "s1", "offset": 9}}')
    assert hello.size == Size(80, 24)
    assert hello.resume == Resume("s1", 9)


@pytest.mark.parametrize(
    "payload",
    [
        b"[]",
        b'{"cols": 80}',
        b'{"cols": 1001, "rows": 5}',
        b'{"cols": true, "rows": 5}',
        b'{"cols": 80, "rows": 24, "resume": {"id": "", "offset": 0}}',
        b'{"cols": 80, "rows": 24, "resume": {"id": "x", "offset": -1}}',
        b"\xff",
    ],
)
def test_bad_hello_is_a_protocol_violation(payload: bytes) -> None:
    with pytest.raises(ProtocolViolation):
        parse_hello(payload)


def test_frame_limits() -> None:
    assert decode(encode(FrameType.INPUT, b"x" * (MAX_CLIENT_FRAME - 1))).type is FrameType.INPUT
    with pytest.raises(FrameTooLarge):
        decode(encode(FrameType.INPUT, b"x" * MAX_CLIENT_FRAME))
    with pytest.raises(ProtocolViolation, match="server only"):
        decode(encode(FrameType.EXIT))


def test_replay_buffer_keeps_the_tail_and_everything_unacknowledged() -> None:
    buffer = ReplayBuffer(capacity=4)
    buffer.append(b"abcdef", keep_from=6)
    assert (buffer.start, buffer.end) == (2, 6)
    assert buffer.read(3, 10) == b"def"
    with pytest.raises(OutputLost):
        buffer.read(1, 10)
    with pytest.raises(OutputLost):
        buffer.read(7, 10)
    buffer.append(b"ghij", keep_from=5)
    assert buffer.start == 5, "bytes from the unacknowledged offset on stay"
    assert buffer.read(5, 100) == b"fghij"
