"""Each session's loop: a pass now, then at once when a watch wakes it, else every resync
interval; after a failing pass, a growing delay.

A timer alone would report a pod's readiness (or a user's activity) only at its next tick; the
loop instead sleeps on a wake-up that the watches of the session and its children set.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Executor
from typing import Any, Protocol

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, session name)
# A failing pass is retried sooner than a minute, later than a hot loop.
MAX_BACKOFF_SECONDS = 60.0


class Stopped(Protocol):
    """kopf's DaemonStopped, as the loop uses it: truthy once set, and awaitable."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


# Waits `delay` seconds, or less if the wake-up or the stop comes first.
Sleep = Callable[[float, asyncio.Event, Stopped], Awaitable[None]]


class Wakeups:
    """One event per running session loop; watches on the session and its children set it."""

    def __init__(self) -> None:
        self._events: dict[Key, asyncio.Event] = {}

    def register(self, key: Key) -> asyncio.Event:
        """A new wake-up for the session's loop."""
        event = asyncio.Event()
        self._events[key] = event
        return event

    def unregister(self, key: Key, event: asyncio.Event) -> None:
        """Forgets the loop's wake-up (unless a newer loop of the session registered since)."""
        if self._events.get(key) is event:
            del self._events[key]

    def wake(self, key: Key) -> None:
        """Makes the session's loop pass now (no-op for a session without a loop)."""
        event = self._events.get(key)
        if event is not None:
            event.set()


@dataclasses.dataclass
class _Held:
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    users: int = 0


class PassLocks:
    """One lock per session, held by each of its passes (they run in worker threads).

    A session's loop runs one pass at a time; the delete handler's last pass comes from
    elsewhere and may start while a pass of the loop is in flight (kopf stops the loop and
    calls the handler at once), so both take the session's lock.
    """

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[Key, _Held] = {}

    @contextlib.contextmanager
    def holding(self, key: Key) -> Iterator[None]:
        """Holds the session's lock; it is forgotten once nobody holds or waits for it."""
        with self._guard:
            held = self._held.setdefault(key, _Held())
            held.users += 1
        try:
            with held.lock:
                yield
        finally:
            with self._guard:
                held.users -= 1
                if not held.users:
                    del self._held[key]

    def users(self, key: Key) -> int:
        """How many passes of the session hold or wait for its lock."""
        with self._guard:
            held = self._held.get(key)
            return held.users if held is not None else 0


def next_delay(failures: int, resync_seconds: float) -> float:
    """Seconds to the next pass after `failures` failing passes in a row (0: all is well).

    Doubling from twice the resync interval, capped at MAX_BACKOFF_SECONDS: an API server
    that refuses every call is not hammered, and a passing fault costs at most a minute.
    """
    if failures == 0:
        return resync_seconds
    return min(MAX_BACKOFF_SECONDS, resync_seconds * 2.0**failures)


async def run(
    key: Key,
    one_pass: Callable[[], None],
    stopped: Stopped,
    wakeups: Wakeups,
    executor: Executor | None,
    resync_seconds: float,
    sleep: Sleep | None = None,
) -> None:
    """Runs `one_pass` in `executor` until `stopped` is set: after each wake-up or delay."""
    sleep = sleep or wait_or_wake
    wakeup = wakeups.register(key)
    failures = 0
    loop = asyncio.get_running_loop()
    try:
        while not stopped:
            wakeup.clear()
            try:
                # kopf.event() from the worker thread finds kopf's queue in the copied context.
                await loop.run_in_executor(executor, contextvars.copy_context().run, one_pass)
                failures = 0
            except Exception:
                failures += 1
                logger.exception(
                    "session %s/%s: pass failed; next in %.0f s",
                    *key,
                    next_delay(failures, resync_seconds),
                )
            await sleep(next_delay(failures, resync_seconds), wakeup, stopped)
    finally:
        wakeups.unregister(key, wakeup)


async def wait_or_wake(delay: float, wakeup: asyncio.Event, stopped: Stopped) -> None:
    """The default Sleep: `delay` seconds, ended early by the wake-up or the stop."""
    tasks = [asyncio.ensure_future(end) for end in (wakeup.wait(), stopped.wait())]
    try:
        await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
