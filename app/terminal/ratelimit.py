"""A token bucket that slows a sender down instead of refusing it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Allows `rate` units a second with bursts up to `burst`; `take` waits for what is missing."""

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self, amount: float) -> bool:
        """Spend `amount` tokens if they are there now; False (spending none) if not."""
        self._refill()
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True

    async def take(self, amount: float) -> None:
        """Spend `amount` tokens, waiting as long as the rate requires."""
        self._refill()
        self._tokens -= amount
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)
