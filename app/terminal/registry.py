"""The live sessions of one server: creation under a limit, lookup for resume, shutdown."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from pathlib import Path

from app.errors import SessionNotFound, TooManySessions
from app.metrics import Metrics
from app.settings import Limits
from app.terminal.heap import HeapTrimmer
from app.terminal.ports import Connector
from app.terminal.ratelimit import Clock
from app.terminal.recording import start_recording
from app.terminal.session import Session, SessionState
from app.terminal.types import Size

log = logging.getLogger(__name__)


class SessionRegistry:
    """Creates sessions, finds them again by id, and ends them all on shutdown."""

    def __init__(
        self,
        connector: Connector,
        limits: Limits,
        metrics: Metrics,
        recordings_dir: Path | None = None,
        clock: Clock = time.monotonic,
        trimmer: HeapTrimmer | None = None,
    ) -> None:
        self.connector = connector
        # Told of every session's output, to give memory back after a burst.
        self.trimmer = trimmer
        self.limits = limits
        self.metrics = metrics
        self.recordings_dir = recordings_dir
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._by_view: dict[str, Session] = {}
        self._supervisors: set[asyncio.Task[None]] = set()
        self._last_activity_wall: float | None = None
        # Read when scraped: note_activity runs per keystroke, a gauge's set takes a lock.
        metrics.last_activity.set_function(lambda: self._last_activity_wall or 0.0)

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session:
        """The live session with this id."""
        session = self._sessions.get(session_id)
        if session is None:
            raise SessionNotFound("that session has ended; start a new one")
        return session

    def get_shared(self, view_id: str) -> Session:
        """The live, connected session shared under this view id."""
        session = self._by_view.get(view_id)
        if session is None or session.terminal is None or session.exit is not None:
            raise SessionNotFound("that shared session has ended, or the link is not right")
        return session

    async def open(self, size: Size) -> Session:
        """Start a session: connect to the target and open a PTY of `size`."""
        if len(self._sessions) >= self.limits.max_sessions:
            raise TooManySessions(
                f"this server already runs {self.limits.max_sessions} sessions; try again later"
            )
        session_id = secrets.token_urlsafe(18)
        recorder = None
        if self.recordings_dir is not None:
            recorder = start_recording(self.recordings_dir, size, self.limits.max_recording_bytes)
            log.info("session %s records to %s", session_id, recorder.path.name)
        session = Session(
            session_id, self.limits, self.metrics, recorder, self.clock, size, self.trimmer
        )
        self._sessions[session_id] = session
        if session.view_id is not None:
            self._by_view[session.view_id] = session
        self.metrics.active_sessions.set(len(self._sessions))
        started = time.perf_counter()
        try:
            session.terminal = await self.connector.open(size, session)
        except BaseException:
            self._forget(session)
            if recorder:
                recorder.close()
            raise
        self.metrics.ssh_connect_seconds.observe(time.perf_counter() - started)
        self.metrics.sessions_total.inc()
        task = asyncio.create_task(self._supervise(session), name=f"session-{session_id}")
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)
        log.info("session %s started", session_id)
        return session

    async def _supervise(self, session: Session) -> None:
        try:
            await session.supervise()
        finally:
            self._forget(session)
            log.info("session %s closed", session.id)

    def _forget(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        if session.view_id is not None:
            self._by_view.pop(session.view_id, None)
        self.metrics.active_sessions.set(len(self._sessions))

    def note_activity(self) -> None:
        """Remember that a user did something just now (wall clock, for reports)."""
        self._last_activity_wall = time.time()

    def activity(self) -> tuple[int, float | None]:
        """Attached connections and the Unix time of the last user activity."""
        attached = sum(1 for s in self._sessions.values() if s.state is SessionState.ATTACHED)
        return attached, self._last_activity_wall

    async def shutdown(self, reason: str, patience: float = 5.0) -> None:
        """End every session with `reason` and wait, up to `patience` s, for clients to hear."""
        for session in list(self._sessions.values()):
            session.end(reason, resumable=False)
        if self.trimmer is not None:
            self.trimmer.close()
        if self._supervisors:
            _, pending = await asyncio.wait(set(self._supervisors), timeout=patience)
            for task in pending:
                task.cancel()
