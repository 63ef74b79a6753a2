"""The per-session loop: passes at once, on wake-ups, on resync, with backoff; stops on request.

The backoff is measured as the schedule the loop asks for (an injected sleep records each
delay), never as elapsed time, so the tests do not depend on the machine's speed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable

import pytest
from ec2_terminal_operator.loop import MAX_BACKOFF_SECONDS, PassLocks, Wakeups, next_delay, run
from ec2_terminal_operator.status import OwnedStatus

from tests.fixtures_kube import wait_for

pytestmark = pytest.mark.anyio


class Stopper:
    """Stands in for kopf's DaemonStopped: truthy once set, `await wait()` until then."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


class Passes:
    """Counts passes (run in a worker thread) and lets the test await the n-th.

    Passes numbered in `failing` (from 1) raise, as when the API server refuses a call.
    """

    def __init__(self, failing: Iterable[int] = ()) -> None:
        self.count = 0
        self.threads: set[int] = set()
        self.failing = set(failing)
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self) -> None:
        self.threads.add(threading.get_ident())
        self.count += 1
        self._loop.call_soon_threadsafe(self._changed.set)
        if self.count in self.failing:
            raise RuntimeError("the API server said no")

    async def reach(self, n: int, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while self.count < n:
                self._changed.clear()
                await self._changed.wait()


async def test_passes_at_once_then_on_each_wakeup_and_stops() -> None:
    wakeups, stopper, passes = Wakeups(), Stopper(), Passes()
    key = ("ns", "demo")
    task = asyncio.create_task(run(key, passes, stopper, wakeups, None, resync_seconds=3600))
    await passes.reach(1)
    wakeups.wake(key)
    await passes.reach(2)
    wakeups.wake(("ns", "another"))  # someone else's pod: no pass here
    wakeups.wake(key)
    await passes.reach(3)
    assert threading.get_ident() not in passes.threads, "passes run off the event loop"
    stopper.set()
    await asyncio.wait_for(task, 10)
    assert passes.count == 3
    wakeups.wake(key)  # the loop is gone: nothing registered, nothing raised


class Schedule:
    """A Sleep that records the delay the loop asks for and returns at once.

    It stops the loop after `limit` waits, so a test reads the whole schedule.
    """

    def __init__(self, stopper: Stopper, limit: int) -> None:
        self.delays: list[float] = []
        self._stopper = stopper
        self._limit = limit

    async def __call__(self, delay: float, wakeup: asyncio.Event, stopped: object) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self._limit:
            self._stopper.set()
        await asyncio.sleep(0)


async def run_schedule(failing: Iterable[int], passes: int, resync: float) -> list[float]:
    """The delays the loop asks for after each of its first `passes` passes."""
    stopper = Stopper()
    schedule = Schedule(stopper, passes)
    counted = Passes(failing)
    await asyncio.wait_for(
        run(("ns", "d"), counted, stopper, Wakeups(), None, resync, sleep=schedule), 10
    )
    assert counted.count == passes
    return schedule.delays


async def test_failing_passes_back_off_doubling_up_to_a_minute_then_resync() -> None:
    delays = await run_schedule(failing=range(1, 6), passes=7, resync=10)
    assert delays == [20, 40, 60, 60, 60, 10, 10]
    assert max(delays) == MAX_BACKOFF_SECONDS


async def test_a_passing_pass_resets_the_backoff() -> None:
    delays = await run_schedule(failing=[1, 2, 4], passes=5, resync=5)
    assert delays == [10, 20, 5, 10, 5]


def test_the_backoff_never_waits_longer_than_a_minute_even_with_a_long_resync() -> None:
    assert [next_delay(n, 5) for n in range(6)] == [5, 10, 20, 40, 60, 60]
    # A failing pass is retried sooner than a resync that is longer than the cap.
    assert next_delay(0, 300) == 300
    assert next_delay(1, 300) == MAX_BACKOFF_SECONDS


async def test_a_wakeup_ends_a_backoff_wait_early() -> None:
    wakeups, stopper, passes = Wakeups(), Stopper(), Passes(failing=[1])
    key = ("ns", "d")
    task = asyncio.create_task(run(key, passes, stopper, wakeups, None, resync_seconds=3600))
    await passes.reach(1)  # failed: the next pass is a minute away
    wakeups.wake(key)
    await passes.reach(2)  # a watch event brings it forward (reach times out after 10 s)
    stopper.set()
    await asyncio.wait_for(task, 10)


async def test_the_default_sleep_resyncs_without_wakeups() -> None:
    wakeups, stopper, passes = Wakeups(), Stopper(), Passes(failing=[1])
    task = asyncio.create_task(run(("ns", "d"), passes, stopper, wakeups, None, 0.01))
    await passes.reach(4)
    stopper.set()
    await asyncio.wait_for(task, 10)


def test_owned_status_overrides_a_stale_body_for_its_own_keys_only() -> None:
    owned = OwnedStatus()
    stale = {"phase": "Provisioning", "readyTime": "t0", "healthCheck": {"result": "ok"}}
    assert owned.view(stale) == stale
    owned.record({"phase": "Ready", "readyTime": None})
    assert owned.view(stale) == {"phase": "Ready", "healthCheck": {"result": "ok"}}
    # A newer body that already holds the patch reads the same.
    assert owned.view({"phase": "Ready", "healthCheck": {"result": "ok"}}) == owned.view(stale)


def test_pass_locks_keep_a_sessions_passes_apart_and_forget_idle_sessions() -> None:
    locks = PassLocks()
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def loop_pass() -> None:
        with locks.holding(("ns", "a")):
            inside.set()
            release.wait(10)
            order.append("loop pass")

    worker = threading.Thread(target=loop_pass)
    worker.start()
    assert inside.wait(10)
    with locks.holding(("ns", "b")):  # another session is not held up
        order.append("other session")
    waiting = threading.Thread(target=lambda: _last_pass(locks, order))
    waiting.start()
    # The delete handler's last pass waits its turn.
    wait_for(lambda: locks.users(("ns", "a")) == 2, timeout=10, interval=0.01)
    assert order == ["other session"]
    release.set()
    worker.join(10)
    waiting.join(10)
    assert order == ["other session", "loop pass", "last pass"]
    assert locks.users(("ns", "a")) == 0


def _last_pass(locks: PassLocks, order: list[str]) -> None:
    with locks.holding(("ns", "a")):
        order.append("last pass")
