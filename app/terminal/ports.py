"""The interfaces the terminal core talks to: a remote terminal, a socket, an attached client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from app.terminal.types import ExitInfo, Size


class OutputSink(Protocol):
    """Receives what the remote terminal produces."""

    def feed(self, data: bytes) -> None:
        """Output bytes arrived."""

    def ended(self, info: ExitInfo) -> None:
        """The remote side ended; no more output follows."""


class RemoteFile(Protocol):
    """A file on the target opened for download: its name and size, then its bytes once."""

    name: str
    size: int

    def chunks(self) -> AsyncIterator[bytes]:
        """The file's bytes in order; closes the file when done or abandoned."""

    async def close(self) -> None:
        """Let the file go (idempotent)."""


class RemoteFiles(Protocol):
    """The target's files, as the SSH user may reach them (SFTP in production).

    Failures are `app.transfer.errors.TransferError`s.
    """

    async def upload(
        self, path: str, body: AsyncIterator[bytes], *, overwrite: bool, limit: int
    ) -> str:
        """Write `body` to `path` (whole or not at all); return the absolute path written."""

    async def download(self, path: str, limit: int) -> RemoteFile:
        """Open the regular file at `path`, at most `limit` bytes, for reading."""


class RemoteTerminal(Protocol):
    """A PTY on the far side: SSH in production, anything in unit tests."""

    host_key_sha256: str

    def write(self, data: bytes) -> None:
        """Send input bytes."""

    async def drain(self) -> None:
        """Wait until written input has been handed to the transport."""

    def writable(self) -> bool:
        """Whether input written now goes out at once rather than piling up in a buffer."""

    def resize(self, size: Size) -> None:
        """Change the PTY's size."""

    def pause_reading(self) -> None:
        """Stop taking output, so the remote program blocks."""

    def resume_reading(self) -> None:
        """Take output again."""

    def close(self) -> None:
        """Hang up."""

    def files(self) -> RemoteFiles:
        """The target's files over the same connection."""


class Connector(Protocol):
    """Opens remote terminals."""

    async def open(self, size: Size, sink: OutputSink) -> RemoteTerminal:
        """Connect, start a shell in a PTY of `size`, and deliver its output to `sink`."""


class SocketClosed(Exception):
    """The browser's socket is gone; raised by Socket methods, with why when it is known."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


class Socket(Protocol):
    """A message socket to the browser: WebSocket in production."""

    async def receive(self) -> bytes:
        """Next binary message; raises SocketClosed once the peer has gone."""

    async def send(self, data: bytes) -> None:
        """Send one binary message; raises SocketClosed once the peer has gone."""

    async def close(self, code: int, reason: str) -> None:
        """Close with a code and a short reason."""


class Watcher(Protocol):
    """A client connected to a session, owner or viewer, told when what it shows changes."""

    def changed(self) -> None:
        """The session's viewer count or terminal size changed: tell the client (never blocks)."""


class Attachment(Watcher, Protocol):
    """The one client attached to a session (a bridge), which steps aside for another."""

    async def kick(self) -> None:
        """Another connection resumed the session: tell the client and close."""
