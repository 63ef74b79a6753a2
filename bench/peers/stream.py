"""Reading a terminal's output stream: waiting for text, and counting what lies between markers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from bench.peers.clients import Session

#: The test sshd's shell prompt (tests/fixtures_sshd.py).
PROMPT = b"test$ "


def marker(name: str) -> tuple[str, bytes]:
    """The shell command printing a marker, and the marker as it arrives.

    The command says `$((6*7))` where the output says 42, so the echoed command line never
    matches.
    """
    return f"echo __{name}__$((6*7))", f"__{name}__42".encode()


async def read_until(session: Session, needle: bytes) -> int:
    """Read until `needle` has arrived; returns the number of bytes read."""
    tail = b""
    total = 0
    while True:
        data = await session.read()
        total += len(data)
        window = tail + data
        if needle in window:
            return total
        tail = window[-(len(needle) - 1) :]


@dataclass
class Between:
    """Counts (and with `digest`, hashes) the bytes between a BEGIN line and an END marker."""

    begin: bytes
    end: bytes
    digest: bool = False
    count: int = 0
    started: bool = False
    done: bool = False
    pending: bytearray = field(default_factory=bytearray)
    sha256: Any = field(default_factory=hashlib.sha256)

    def feed(self, data: bytes) -> bool:
        """Take the next output bytes; True once END has arrived."""
        self.pending += data
        if not self.started:
            found = self.pending.find(self.begin)
            if found < 0:
                del self.pending[: max(0, len(self.pending) - len(self.begin) + 1)]
                return False
            self.started = True
            del self.pending[: found + len(self.begin)]
        found = self.pending.find(self.end)
        take = found if found >= 0 else max(0, len(self.pending) - len(self.end) + 1)
        self.count += take
        if self.digest:
            self.sha256.update(memoryview(self.pending)[:take])
        del self.pending[:take]
        self.done = found >= 0
        return self.done

    def hexdigest(self) -> str:
        return str(self.sha256.hexdigest())
