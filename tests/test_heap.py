"""When the heap trimmer trims: once per burst of output, only after output has gone quiet."""

from __future__ import annotations

import asyncio

import pytest

from app.terminal.heap import HeapTrimmer, malloc_trim

pytestmark = pytest.mark.anyio


class Trims:
    """Counts trims; `next` waits for one."""

    def __init__(self) -> None:
        self.count = 0
        self._happened = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._happened.set()

    async def next(self, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            await self._happened.wait()
        self._happened.clear()


async def test_a_burst_is_trimmed_once_output_goes_quiet() -> None:
    trims = Trims()
    trimmer = HeapTrimmer(trims, burst=100, quiet=0.05)
    trimmer.note(60)
    await asyncio.sleep(0.1)
    assert trims.count == 0, "below the burst size nothing is trimmed"
    trimmer.note(60)
    await trims.next()
    await asyncio.sleep(0.1)
    assert trims.count == 1, "one trim per burst"


async def test_no_trim_while_output_keeps_flowing() -> None:
    trims = Trims()
    trimmer = HeapTrimmer(trims, burst=10, quiet=0.1)
    for _ in range(15):  # output every 20 ms for 0.3 s: never quiet for 0.1 s
        trimmer.note(10)
        await asyncio.sleep(0.02)
    assert trims.count == 0
    await trims.next()
    trimmer.close()


async def test_close_cancels_a_pending_trim() -> None:
    trims = Trims()
    trimmer = HeapTrimmer(trims, burst=1, quiet=0.05)
    trimmer.note(1)
    trimmer.close()
    await asyncio.sleep(0.15)
    assert trims.count == 0


def test_glibc_trim_is_found_here() -> None:
    # This machine runs glibc: without the trim, the memory test in test_flow_control fails.
    trim = malloc_trim()
    assert trim is not None
    trim()
