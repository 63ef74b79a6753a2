"""The per-session loop: passes at once, on wake-ups, on resync, with backoff; stops on request."""

from __future__ import annotations

import asyncio
import threading

import pytest
from ec2_terminal_operator.loop import PassLocks, Wakeups, run
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
    """Counts passes (run in a worker thread) and lets the test await the n-th."""

    def __init__(self, fail_first: int = 0) -> None:
        self.count = 0
        self.threads: set[int] = set()
        self.fail_first = fail_first
        self._loop = asyncio.get_running_loop()
        self._changed = asyncio.Event()

    def __call__(self) -> None:
        self.threads.add(threading.get_ident())
        self.count += 1
        self._loop.call_soon_threadsafe(self._changed.set)
        if self.count <= self.fail_first:
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


async def test_resync_without_wakeups_and_backoff_after_failures() -> None:
    wakeups, stopper, passes = Wakeups(), Stopper(), Passes(fail_first=2)
    task = asyncio.create_task(run(("ns", "d"), passes, stopper, wakeups, None, 0.01))
    await passes.reach(5)  # two failures retried (after 0.02 s, 0.04 s), then plain resyncs
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
