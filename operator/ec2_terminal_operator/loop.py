"""Each session's reconcile loop: a pass now, then at once when its pod or Service changes,
else every resync interval.

A timer alone would report a pod's readiness (or a user's activity) only at its next tick; the
loop instead sleeps on a wake-up that the pod and Service watches set.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from kubernetes.client.exceptions import ApiException

from ec2_terminal_operator.kube import Clients
from ec2_terminal_operator.spec import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, session name)
# A failing pass is retried sooner than a minute, later than a hot loop.
MAX_BACKOFF_SECONDS = 60.0


class Wakeups:
    """One event per running session loop; watches on its children set it."""

    def __init__(self) -> None:
        self._events: dict[Key, asyncio.Event] = {}

    def register(self, key: Key) -> asyncio.Event:
        event = asyncio.Event()
        self._events[key] = event
        return event

    def unregister(self, key: Key, event: asyncio.Event) -> None:
        if self._events.get(key) is event:
            del self._events[key]

    def wake(self, key: Key) -> None:
        """Makes the session's loop pass now (no-op for a session without a loop)."""
        event = self._events.get(key)
        if event is not None:
            event.set()


class OwnedStatus:
    """The operator's own status keys as last written, laid over a possibly older body.

    A loop's next pass can start before the watch has delivered its previous status patch;
    reading that stale status would repeat transitions and their Events. The operator is the
    only writer of these keys, so what it wrote last is the truth for them.
    """

    def __init__(self) -> None:
        self._written: dict[str, Any] = {}

    def view(self, status: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(status)
        for key, value in self._written.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def record(self, patch: Mapping[str, Any]) -> None:
        self._written.update(patch)


def patch_status(clients: Clients, namespace: str, name: str, changes: Mapping[str, Any]) -> bool:
    """Merge-patches the session's status; False if the session is gone."""
    try:
        clients.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, {"status": changes}, _preload_content=False
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def run(
    key: Key,
    one_pass: Callable[[], None],
    stopped: Any,
    wakeups: Wakeups,
    executor: Executor | None,
    resync_seconds: float,
) -> None:
    """Runs `one_pass` in `executor` until `stopped` is set: after each wake-up or resync."""
    wakeup = wakeups.register(key)
    failures = 0
    loop = asyncio.get_running_loop()
    try:
        while not stopped:
            wakeup.clear()
            try:
                # kopf.event() from the worker thread finds kopf's queue in the copied context.
                await loop.run_in_executor(executor, contextvars.copy_context().run, one_pass)
                failures, delay = 0, resync_seconds
            except Exception:
                failures += 1
                delay = min(MAX_BACKOFF_SECONDS, resync_seconds * 2**failures)
                logger.exception("session %s/%s: pass failed; next in %.0f s", *key, delay)
            await _sleep(delay, wakeup.wait(), stopped.wait())
    finally:
        wakeups.unregister(key, wakeup)


async def _sleep(delay: float, *ends: Awaitable[Any]) -> None:
    """Waits `delay` seconds, or less if one of `ends` completes."""
    tasks = [asyncio.ensure_future(end) for end in ends]
    try:
        await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
