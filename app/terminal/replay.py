"""The last N bytes of a session's output, addressed by absolute offset, for resume."""

from __future__ import annotations

from bisect import bisect_right

from app.errors import OutputLost


class ReplayBuffer:
    """A bounded byte buffer over an unbounded stream: offsets count every byte ever appended.

    Output is held as the chunks it arrived in, so appending and forgetting never copy bytes
    and a read of one whole chunk hands out that chunk itself.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: list[bytes] = []
        self._offsets: list[int] = []  # absolute offset of each chunk's first byte
        self._first = 0  # index of the oldest chunk still held; earlier entries await compaction
        self._start = 0
        self._end = 0

    @property
    def start(self) -> int:
        """Offset of the oldest byte still held."""
        return self._start

    @property
    def end(self) -> int:
        """Offset one past the newest byte: the total ever appended."""
        return self._end

    def append(self, data: bytes, keep_from: int) -> None:
        """Add bytes at the end, forgetting the oldest beyond capacity but none from `keep_from` on.

        Flow control bounds what is kept beyond capacity: the client has not confirmed those bytes.
        """
        if not data:
            return
        self._chunks.append(bytes(data))
        self._offsets.append(self._end)
        self._end += len(data)
        excess = min(self._end - self._start - self.capacity, keep_from - self._start)
        if excess > 0:
            self._forget_before(self._start + excess)

    def _forget_before(self, offset: int) -> None:
        self._start = offset
        last = len(self._chunks) - 1
        while self._first < last and self._offsets[self._first + 1] <= offset:
            self._first += 1
        if self._first > 64 and self._first * 2 > len(self._chunks):
            del self._chunks[: self._first]
            del self._offsets[: self._first]
            self._first = 0

    def read(self, offset: int, limit: int) -> bytes:
        """Return up to `limit` bytes starting at absolute `offset`."""
        if offset < self._start:
            raise OutputLost(
                f"output from offset {offset} is no longer kept (oldest is {self._start})"
            )
        if offset > self._end:
            raise OutputLost(f"offset {offset} is beyond the output produced ({self._end})")
        index = bisect_right(self._offsets, offset, lo=self._first) - 1
        pieces: list[bytes] = []
        wanted = min(limit, self._end - offset)
        while wanted > 0:
            chunk = self._chunks[index]
            begin = offset - self._offsets[index]
            piece = chunk[begin : begin + wanted]  # the chunk itself when taken whole
            pieces.append(piece)
            offset += len(piece)
            wanted -= len(piece)
            index += 1
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)
