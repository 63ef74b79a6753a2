"""asyncssh's receive buffer, consumed from the front without copying what follows."""

from __future__ import annotations

from typing import Any, overload


class ReadBuffer:
    """Received bytes not yet parsed, as asyncssh's connection uses them (`_inpbuf`).

    asyncssh keeps them as one `bytes` and, per packet, slices off the header and then the
    body (`buf = buf[n:]`), copying everything after it each time: a socket read of 200 KiB
    holds ~50 PTY-sized packets, so each read copied ~5 MiB, in buffers of every size up to
    the read's (~13 % of the server's CPU per MiB, and a likely part of the heap's high-water
    mark during a fast transfer). Here the rest is a view (the same bytes and an offset); only
    a packet's own bytes are copied out, and the unparsed tail once, when more data arrives.
    """

    __slots__ = ("_data", "_start")

    def __init__(self, data: bytes = b"", start: int = 0) -> None:
        self._data = data
        self._start = start

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def __bytes__(self) -> bytes:
        return self._data[self._start :]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ReadBuffer):
            other = bytes(other)
        return bytes(self) == other

    __hash__ = None  # type: ignore[assignment]

    def __iadd__(self, more: bytes) -> ReadBuffer:
        if self._start:
            self._data = self._data[self._start :] + more
            self._start = 0
        elif self._data:
            self._data += more
        else:
            self._data = more  # the usual case once a read is all parsed: no copy at all
        return self

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> Any: ...

    def __getitem__(self, index: int | slice) -> Any:
        """`[n:]` is the rest after n bytes, as a view; any other slice is `bytes`."""
        if isinstance(index, int) or index.step is not None:
            return bytes(self)[index]
        start = 0 if index.start is None else index.start
        stop = index.stop
        if start < 0 or (stop is not None and stop < 0):
            return bytes(self)[index]
        if stop is None:
            return ReadBuffer(self._data, min(self._start + start, len(self._data)))
        return self._data[self._start + start : self._start + min(stop, len(self))]

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        """As bytes.find, in offsets of this buffer."""
        stop = len(self) if end is None else min(end, len(self))
        found = self._data.find(sub, self._start + start, self._start + stop)
        return found if found < 0 else found - self._start
