"""One terminal session: the remote PTY's output buffered for resume, flow control, lifetime."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from enum import Enum

from app.errors import TooManyViewers
from app.metrics import Metrics
from app.settings import Limits
from app.terminal.heap import HeapTrimmer
from app.terminal.ports import Attachment, RemoteTerminal, Watcher
from app.terminal.protocol import MAX_OUTPUT_CHUNK
from app.terminal.ratelimit import Clock, TokenBucket
from app.terminal.recording import Recorder
from app.terminal.replay import ReplayBuffer
from app.terminal.types import ExitInfo, Size

log = logging.getLogger(__name__)

# Input received but not yet written to the remote terminal. Beyond this the client's socket
# is no longer read; below it, ACK and PING frames behind a large paste are handled at once.
INPUT_BACKLOG = 1024 * 1024
# While the backlog is full the client's frames, its keepalive PING too, wait unread in the
# socket; the connection tells the client it is alive this often instead (a PING of its own).
STALLED_PING_SECONDS = 5
DEFAULT_SIZE = Size(80, 24)


class SessionState(Enum):
    """Where a session is in its life."""

    CONNECTING = "connecting"
    ATTACHED = "attached"
    DETACHED = "detached"
    ENDED = "ended"


class Session:
    """Owns a remote terminal; outlives the sockets that attach to it, for `resume_grace`."""

    def __init__(
        self,
        session_id: str,
        limits: Limits,
        metrics: Metrics,
        recorder: Recorder | None = None,
        clock: Clock = time.monotonic,
        size: Size = DEFAULT_SIZE,
        trimmer: HeapTrimmer | None = None,
    ) -> None:
        self.id = session_id
        # What a viewer presents to join read-only: unlike the id, it cannot resume (take over).
        self.view_id = secrets.token_urlsafe(18) if limits.max_viewers > 0 else None
        self.size = size
        self.limits = limits
        self.metrics = metrics
        # Resolved once: a label lookup per chunk costs more than the count itself.
        self._bytes = metrics.terminal_bytes
        self.recorder = recorder
        self._trimmer = trimmer
        self.clock = clock
        self.buffer = ReplayBuffer(limits.replay_buffer)
        self.acked = 0
        self.exit: ExitInfo | None = None
        self.terminal: RemoteTerminal | None = None
        self.state = SessionState.CONNECTING
        self.started = clock()
        self.last_activity = self.started
        self.detached_since: float | None = None
        self._attachment: Attachment | None = None
        # The identity of the login whose connection last attached as owner (files are theirs).
        self.owner: str | None = None
        self._viewers: set[Watcher] = set()
        # Set once the session is over and let go: nothing more will be appended.
        self.released = asyncio.Event()
        self._output_ready = asyncio.Event()
        self._lifetime_changed = asyncio.Event()
        self._paused_since: float | None = None
        self._exit_delivered = False
        self._resumable = True
        self._input: deque[bytes] = deque()
        self._input_queued = 0
        self._input_ready = asyncio.Event()
        self._input_space = asyncio.Event()
        self._input_bucket = TokenBucket(limits.input_rate, limits.input_rate, clock)

    # -- output side: the remote terminal calls these -------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take output from the remote terminal, pausing it when the client lags a window behind."""
        self.buffer.append(data, keep_from=self.acked)
        self._bytes.outbound += len(data)
        if self.recorder:
            self.recorder.output(data)
        if self._trimmer is not None:
            self._trimmer.note(len(data))
        if self.terminal and self._paused_since is None and self.unacked > self.limits.flow_window:
            self.terminal.pause_reading()
            self._paused_since = self.clock()
        self._output_ready.set()

    def ended(self, info: ExitInfo) -> None:
        """Record how the remote side ended; the first reason wins."""
        if self.exit is None:
            self.exit = info
            log.info("session %s ended: %s (status %s)", self.id, info.reason, info.exit_status)
        self._output_ready.set()
        self._lifetime_changed.set()

    @property
    def unacked(self) -> int:
        """Output bytes read from the remote side that the client has not confirmed rendering."""
        return self.buffer.end - self.acked

    # -- client side: the bridge calls these ---------------------------------------------------

    def ack(self, offset: int) -> None:
        """The client has rendered everything before `offset`: open the window again."""
        if offset <= self.acked:
            return
        self.acked = min(offset, self.buffer.end)
        if self._paused_since is not None and self.unacked <= self.limits.flow_window:
            self.metrics.stall_seconds.inc(self.clock() - self._paused_since)
            self._paused_since = None
            if self.terminal:
                self.terminal.resume_reading()

    async def next_output(self, offset: int) -> bytes | None:
        """Wait for output at `offset` and return a chunk of it; None once all is read."""
        while True:
            if offset < self.buffer.end:
                return self.buffer.read(offset, MAX_OUTPUT_CHUNK)
            if self.exit is not None:
                return None
            self._output_ready.clear()
            await self._output_ready.wait()

    async def write(
        self, data: bytes, stalled: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Queue input for the remote terminal; waits only while the backlog is full, calling
        `stalled` every STALLED_PING_SECONDS of that wait.

        The session writes the queue at the input rate, so a socket stays responsive (ACK,
        PING, RESIZE) during a large paste, and queued input survives a reconnect.
        """
        self.touch()
        self._bytes.inbound += len(data)
        if (
            not self._input_queued
            and self.terminal is not None
            and self.exit is None
            and self.terminal.writable()
            and self._input_bucket.try_take(len(data))
        ):
            # Typing's usual case, nothing queued, the channel taking input and tokens to
            # spare: write at once rather than wake the writer task (a task switch per
            # keystroke). The writer drains before it writes anything queued after this.
            # Behind a target that reads nothing, input queues against INPUT_BACKLOG
            # instead: else every second's tokens would pile up in the SSH channel's buffer.
            self._write_now(self.terminal, data)
            return
        while self._input_queued >= INPUT_BACKLOG and self.exit is None:
            self._input_space.clear()
            try:
                async with asyncio.timeout(STALLED_PING_SECONDS):
                    await self._input_space.wait()
            except TimeoutError:
                if stalled is not None:
                    await stalled()
        self._input.append(data)
        self._input_queued += len(data)
        self._input_ready.set()

    async def _write_input(self) -> None:
        """Feeds queued input to the remote terminal at the input rate, as it can take it."""
        while True:
            while not self._input:
                self._input_ready.clear()
                await self._input_ready.wait()
            data = self._input[0]  # still counted as queued: `write` must not overtake it
            await self._input_bucket.take(len(data))
            if self.terminal and self.exit is None:
                await self.terminal.drain()
                if self.exit is None:
                    self._write_now(self.terminal, data)
            self._input.popleft()
            self._input_queued -= len(data)
            self._input_space.set()

    def _write_now(self, terminal: RemoteTerminal, data: bytes) -> None:
        try:
            terminal.write(data)
        except OSError as exc:  # the channel closed under us: the session is ending
            log.debug("session %s: input not delivered: %s", self.id, exc)

    def resize(self, size: Size) -> None:
        """Resize the remote PTY."""
        self.touch()
        if self.recorder:
            self.recorder.resize(size)
        if self.terminal and self.exit is None:
            self.terminal.resize(size)
        if size != self.size:
            self.size = size
            self._announce()

    def touch(self) -> None:
        """Note user activity, which keeps the idle timeout away."""
        self.last_activity = self.clock()

    # -- attachment ------------------------------------------------------------------------------

    def attach(self, owner: Attachment, identity: str) -> Attachment | None:
        """Make `owner` (of login `identity`) the one attached client; return whom it displaced."""
        previous, self._attachment = self._attachment, owner
        self.owner = identity
        if self.exit is None:
            self.state = SessionState.ATTACHED
        self.detached_since = None
        self.touch()
        self._lifetime_changed.set()
        return previous

    def detach(self, owner: Attachment) -> None:
        """`owner`'s socket has gone; keep the session for the grace period."""
        if self._attachment is not owner:
            return
        self._attachment = None
        if self.exit is None:
            self.state = SessionState.DETACHED
        self.detached_since = self.clock()
        self._lifetime_changed.set()

    # -- viewers ---------------------------------------------------------------------------------

    @property
    def viewer_count(self) -> int:
        """Read-only viewers watching now."""
        return len(self._viewers)

    def sharing(self) -> dict[str, int]:
        """What STATUS tells every client about the shared session: viewers and the PTY's size."""
        return {"viewers": len(self._viewers), "cols": self.size.cols, "rows": self.size.rows}

    def add_viewer(self, viewer: Watcher) -> None:
        """Let `viewer` watch; refused beyond `max_viewers`."""
        if len(self._viewers) >= self.limits.max_viewers:
            raise TooManyViewers(
                f"this session already has {self.limits.max_viewers} viewers; try again later"
            )
        self._viewers.add(viewer)
        self.metrics.viewers.inc()
        self._announce()

    def remove_viewer(self, viewer: Watcher) -> None:
        """`viewer`'s socket has gone."""
        if viewer in self._viewers:
            self._viewers.discard(viewer)
            self.metrics.viewers.dec()
            self._announce()

    def _announce(self) -> None:
        """Tell every client that the viewer count or the size changed."""
        if self._attachment is not None:
            self._attachment.changed()
        for viewer in self._viewers:
            viewer.changed()

    # -- lifetime --------------------------------------------------------------------------------

    def end(self, reason: str, *, resumable: bool = True) -> None:
        """End the session from our side: hang up and tell the client why.

        With `resumable` false (the server is going away), a detached client is not waited for.
        """
        self._resumable = resumable
        self.ended(ExitInfo(None, reason))
        self.close_terminal()

    def exit_delivered(self) -> None:
        """The client has received every byte and the EXIT: nothing is left to resume."""
        self._exit_delivered = True
        self._lifetime_changed.set()

    def close_terminal(self) -> None:
        """Hang up the remote terminal if it is open."""
        if self._paused_since is not None:  # a stall that no ACK ended still counts
            self.metrics.stall_seconds.inc(self.clock() - self._paused_since)
            self._paused_since = None
        self.state = SessionState.ENDED
        if self.terminal:
            self.terminal.close()

    def _deadline(self) -> tuple[float, str]:
        lim = self.limits
        deadlines = [
            (self.started + lim.max_duration, "maximum session duration reached"),
            (self.last_activity + lim.idle_timeout, "idle timeout"),
        ]
        if self.detached_since is not None:
            grace_end = self.detached_since + lim.resume_grace
            deadlines.append((grace_end, "client did not come back within the grace period"))
        return min(deadlines)

    async def _lifetime_change(self, patience: float | None) -> bool:
        """Wait for an attach, detach or end, up to `patience` s; False if the time ran out."""
        self._lifetime_changed.clear()
        try:
            async with asyncio.timeout(patience):
                await self._lifetime_changed.wait()
        except TimeoutError:
            return False
        return True

    def _grace_left(self) -> float | None:
        """How long an ended session still waits for its client; None: while it is attached."""
        if self._attachment is not None:
            return None
        if self.detached_since is None or not self._resumable:
            return 0.0
        return self.detached_since + self.limits.resume_grace - self.clock()

    async def supervise(self) -> None:
        """End the session at its earliest deadline; return once it has ended and been let go."""
        writer = asyncio.create_task(self._write_input(), name=f"input-{self.id}")
        try:
            await self._supervise()
        finally:
            writer.cancel()
            self._input_space.set()  # a client waiting on a full backlog must not hang
            self.released.set()

    async def _supervise(self) -> None:
        while self.exit is None:
            deadline, reason = self._deadline()
            remaining = deadline - self.clock()
            if remaining <= 0:
                self.end(reason)
                break
            await self._lifetime_change(remaining)
        # An ended session waits for its client to fetch the rest and the EXIT, if it may return.
        while not self._exit_delivered:
            left = self._grace_left()
            if left is not None and left <= 0:
                break
            if not await self._lifetime_change(left):
                break
        self.close_terminal()
        if self.recorder:
            self.recorder.close()
