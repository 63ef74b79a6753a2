"""Gives the memory freed after a burst of terminal output back to the system.

A fast transfer allocates and frees tens of thousands of 16 to 256 KiB buffers (socket reads,
SSH packets, WebSocket frames) between the replay buffer's longer-lived chunks. glibc returns
freed memory only from the top of its heap, so the freed holes stay resident: one 256 MiB
`cat` left ~40 to 90 MiB of RSS behind for the life of the process, though the live data
never exceeded a few MiB. `malloc_trim` hands the holes back (madvise), at the cost of one
walk of the free lists, so it runs once per burst, when output has gone quiet.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Output bytes after which a quiet spell is worth a trim: less leaves little to give back.
TRIM_AFTER = 8 * 1024 * 1024
# How long output must pause before the trim (a transfer under way keeps allocating).
QUIET_SECONDS = 1.0


def malloc_trim() -> Callable[[], None] | None:
    """glibc's `malloc_trim(0)`, or None where the C library has none (musl, macOS)."""
    # The process's own symbols include its C library's: no find_library (which may run
    # ldconfig in a subprocess at start-up).
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release


class HeapTrimmer:
    """Counts output; after `burst` bytes, trims the heap once output has paused `quiet` s.

    `note` is on every chunk's path, so it only adds and compares; one timer per `quiet`
    seconds runs while a burst lasts.
    """

    def __init__(
        self,
        trim: Callable[[], None] | None,
        burst: int = TRIM_AFTER,
        quiet: float = QUIET_SECONDS,
    ) -> None:
        self._trim = trim
        self.burst = burst
        self.quiet = quiet
        self._since_trim = 0
        self._seen = 0
        self._timer: asyncio.TimerHandle | None = None

    def note(self, size: int) -> None:
        """`size` bytes of output passed through."""
        self._since_trim += size
        if self._timer is None and self._since_trim >= self.burst and self._trim is not None:
            self._arm()

    def _arm(self) -> None:
        self._seen = self._since_trim
        self._timer = asyncio.get_running_loop().call_later(self.quiet, self._quiet_yet)

    def _quiet_yet(self) -> None:
        self._timer = None
        if self._since_trim != self._seen:
            self._arm()  # still flowing: look again later
            return
        self._since_trim = 0
        assert self._trim is not None
        self._trim()
        log.debug("trimmed the heap after a burst of output")

    def close(self) -> None:
        """Cancel a pending trim (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
