"""A session that keeps typing and reading in a thread of its own while a test attacks the
server: proof that a fault in one place has no effect on another live session."""

from __future__ import annotations

import asyncio
import threading
import time
from types import TracebackType

from tests.fixtures_server import RunningServer
from tests.wsclient import connected


class Bystander:
    """Echoes a counter through its own session every `interval` s, in its own event loop."""

    def __init__(self, server: RunningServer, interval: float = 0.5, patience: float = 30) -> None:
        self.server = server
        self.interval = interval
        self.patience = patience
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="bystander", daemon=True)

    def __enter__(self) -> Bystander:
        self._thread.start()
        if not self._ready.wait(60) or self.failures:
            self._stop.set()
            raise AssertionError(f"the bystander session never started: {self.failures}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(self.patience + 30)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # every failure is the test's business, reported by check()
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            self._ready.set()

    async def _run(self) -> None:
        client = await connected(self.server)
        self._ready.set()
        n = 0
        try:
            while not self._stop.is_set():
                n += 1
                started = time.monotonic()
                await client.send_input(f"echo by-{n}-$(({n}+1))\r")
                await client.until_text(f"by-{n}-{n + 1}", timeout=self.patience)
                self.latencies.append(time.monotonic() - started)
                client.output.clear()
                await asyncio.sleep(self.interval)
        finally:
            await client.ws.close()

    def check(self, at_least: int = 1) -> None:
        """Every round trip came back, and there were at least `at_least` of them."""
        assert self.failures == [], f"the bystander session was harmed: {self.failures}"
        assert len(self.latencies) >= at_least, f"only {len(self.latencies)} round trips"
