"""Hypothesis strategies for `ec2-terminal.v1` client messages, and the settings CI runs them with.

The examples are derandomized (the same ones on every run, no example database), so a CI
failure reproduces locally; `EC2_TERMINAL_FUZZ_EXAMPLES` multiplies the counts for a longer
hunt on a developer's machine.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from app.terminal.protocol import MAX_CLIENT_FRAME, MAX_HELLO, FrameType, encode

SCALE = float(os.environ.get("EC2_TERMINAL_FUZZ_EXAMPLES", "1"))


def fuzz_settings(examples: int) -> settings:
    """Bounded, reproducible runs; fixtures (a server, its sessions) are shared by examples."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )


U16 = st.sampled_from([0, 1, 80, 1000, 1001, 65535]) | st.integers(0, 65535)
U64 = st.sampled_from([0, 1, 2**32, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=15,
)
SIDES = st.sampled_from([0, 1, 80, 1000, 1001, 65535, -1, 2**64]) | JSON_SCALARS
SESSION_IDS = st.text(max_size=200) | st.integers() | st.none() | st.binary(max_size=20).map(str)
HELLO_BODIES = st.fixed_dictionaries(
    {"cols": SIDES, "rows": SIDES},
    optional={
        "resume": st.fixed_dictionaries({"id": SESSION_IDS, "offset": U64 | SIDES}) | JSON_VALUES,
        "extra": JSON_VALUES,
    },
)
# What crashes or exhausts JSON parsers, and what sits just either side of the limits.
HOSTILE_HELLOS = [
    b"[" * 100_000,
    b'{"cols":' * 400 + b"1" + b"}" * 400,
    b'{"cols": 80, "rows": ' + b"9" * 5000 + b"}",
    b'{"cols": 1e999, "rows": 24}',
    b'{"cols": NaN, "rows": Infinity}',
    b'{"cols": 80, "rows": 24, "cols": 0}',
    b'{"cols": 80, "rows": 24, "resume": {"id": "\\ud800", "offset": 0}}',
    b'\xef\xbb\xbf{"cols": 80, "rows": 24}',
    b'{"cols": 80, "rows": 24}\x00',
    b"\xc0\xaf",
    b'{"cols": 80, "rows": 24, "pad": "' + b"x" * (MAX_HELLO - 30) + b'"}',
    b'{"cols": 80, "rows": 24, "pad": "' + b"x" * (MAX_HELLO + 1) + b'"}',
    b'{"cols": 80, "rows": 24, "resume": {"id": "' + b"x" * 129 + b'", "offset": 0}}',
    b'{"cols": 80.0, "rows": 24}',
    b'{"cols": true, "rows": false}',
    b"",
]


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


HELLO_PAYLOADS = (
    HELLO_BODIES.map(_dumps)
    | JSON_VALUES.map(_dumps)
    | st.binary(max_size=MAX_HELLO + 16)
    | st.sampled_from(HOSTILE_HELLOS)
)
# Typed input is harmless letters of many lengths: the live tests type into a real shell,
# and its content does not matter to the protocol, only its size (the parser tests use
# arbitrary bytes).
INPUT_SIZES = st.sampled_from([0, 1, MAX_CLIENT_FRAME - 2, MAX_CLIENT_FRAME - 1, MAX_CLIENT_FRAME])
INPUT_SIZES = INPUT_SIZES | st.integers(0, 80) | st.integers(0, 80_000)


def hello(body: Any) -> bytes:
    """A HELLO frame with `body` as its JSON."""
    return encode(FrameType.HELLO, _dumps(body))


FRAMES = st.one_of(
    st.binary(max_size=24),  # empty, truncated, unknown types
    st.builds(encode, st.sampled_from(FrameType), st.binary(max_size=24)),  # server-only too
    st.builds(lambda c, r: encode(FrameType.RESIZE, struct.pack(">HH", c, r)), U16, U16),
    st.builds(lambda n: encode(FrameType.ACK, struct.pack(">Q", n)), U64),
    st.builds(lambda p: encode(FrameType.ACK, p), st.binary(max_size=12)),
    st.builds(lambda p: encode(FrameType.RESIZE, p), st.binary(max_size=6)),
    st.builds(lambda p: encode(FrameType.HELLO, p), HELLO_PAYLOADS),
    st.builds(lambda n: encode(FrameType.INPUT, b"a" * n), INPUT_SIZES),
    st.builds(lambda p: encode(FrameType.PING, p), st.binary(max_size=64)),
    st.builds(lambda p: encode(FrameType.PONG, p), st.binary(max_size=64)),
)
# A WebSocket message: binary (a frame) or text, which the protocol refuses.
MESSAGES = FRAMES | st.text(max_size=40)


def defang(message: bytes | str) -> bytes | str:
    """The message with any keystrokes replaced by as many letters (for a real shell)."""
    if isinstance(message, bytes) and message[:1] == bytes([FrameType.INPUT]):
        return message[:1] + b"a" * (len(message) - 1)
    return message


LIVE_MESSAGES = MESSAGES.map(defang)
