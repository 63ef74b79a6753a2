"""The last N bytes of a session's output, addressed by absolute offset, for resume."""

from __future__ import annotations

from app.errors import OutputLost


class ReplayBuffer:
    """A bounded byte buffer over an unbounded stream: offsets count every byte ever appended."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data = bytearray()
        self._start = 0

    @property
    def start(self) -> int:
        """Offset of the oldest byte still held."""
        return self._start

    @property
    def end(self) -> int:
        """Offset one past the newest byte: the total ever appended."""
        return self._start + len(self._data)

    def append(self, data: bytes, keep_from: int) -> None:
        """Add bytes at the end, forgetting the oldest beyond capacity but none from `keep_from` on.

        Flow control bounds what is kept beyond capacity: the client has not confirmed those bytes.
        """
        self._data += data
        excess = min(len(self._data) - self.capacity, keep_from - self._start)
        if excess > 0:
            del self._data[:excess]
            self._start += excess

    def read(self, offset: int, limit: int) -> bytes:
        """Return up to `limit` bytes starting at absolute `offset`."""
        if offset < self._start:
            raise OutputLost(
                f"output from offset {offset} is no longer kept (oldest is {self._start})"
            )
        if offset > self.end:
            raise OutputLost(f"offset {offset} is beyond the output produced ({self.end})")
        begin = offset - self._start
        return bytes(self._data[begin : begin + limit])
