"""Session recordings in asciicast v2: a JSON header line, then one JSON event per line."""

from __future__ import annotations

import codecs
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path
from typing import IO

from app.terminal.types import Size

log = logging.getLogger(__name__)

RECORDING_SUFFIX = ".cast"
# What a recording that reached its size limit ends with: a marker event and an output line.
SIZE_LIMIT_REACHED = "recording stopped: size limit reached"
# Room kept below the limit for those two closing events.
_CLOSING_RESERVE = 256
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}\.cast$")


def recording_name() -> str:
    """A new recording's file name: its UTC start time and a random part, never the session id.

    A session id lets its holder resume the session, so it must not appear in a listing.
    """
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{started}-{secrets.token_urlsafe(12)}{RECORDING_SUFFIX}"


class Recorder:
    """Appends a session's output and resizes to its `.cast` file; input is never recorded.

    The file never grows beyond `max_bytes`: an event that would not fit ends the recording
    with a marker, and the session goes on unrecorded.
    """

    def __init__(self, path: Path, size: Size, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.size_limit_reached = False
        self._written = 0
        self._started = time.monotonic()
        # Output may split a UTF-8 sequence across reads; asciicast events must hold text.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Output may hold anything the user saw: readable by the server's own user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        # Line-buffered: each event reaches the file at once, so a live session's recording
        # can be listed by its true size and played up to now.
        self._file: IO[str] | None = os.fdopen(fd, "w", encoding="utf-8", buffering=1)
        header = {
            "version": 2,
            "width": size.cols,
            "height": size.rows,
            "timestamp": int(time.time()),
            "env": {"TERM": "xterm-256color"},
        }
        self._write(header)

    def _write(self, record: object, closing: bool = False) -> None:
        if self._file is None:
            return
        line = json.dumps(record, ensure_ascii=False) + "\n"
        size = len(line.encode())
        if not closing and self._written + size + _CLOSING_RESERVE > self.max_bytes:
            self._stop_at_limit()
            return
        try:
            self._file.write(line)
        except OSError as exc:
            log.warning("recording %s stopped: %s", self.path.name, exc)
            self._close_file()
            return
        self._written += size

    def _event(self, kind: str, data: str, closing: bool = False, later: float = 0.0) -> None:
        elapsed = time.monotonic() - self._started + later
        self._write([round(elapsed, 6), kind, data], closing)

    def _stop_at_limit(self) -> None:
        """End the file with a marker and a line saying why; nothing is written after them."""
        self.size_limit_reached = True
        log.warning(
            "recording %s reached its size limit (%d bytes); the session goes on unrecorded",
            self.path.name,
            self.max_bytes,
        )
        self._event("m", SIZE_LIMIT_REACHED, closing=True)
        # A millisecond after the marker: players show no marker at the very end.
        self._event("o", f"\r\n[{SIZE_LIMIT_REACHED}]\r\n", closing=True, later=0.001)
        self._close_file()

    def output(self, data: bytes) -> None:
        """Record output bytes."""
        text = self._decoder.decode(data)
        if text:
            self._event("o", text)

    def resize(self, size: Size) -> None:
        """Record a terminal resize."""
        self._event("r", f"{size.cols}x{size.rows}")

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            tail = self._decoder.decode(b"", final=True)
            if tail:
                self._event("o", tail)
            self._close_file()

    def _close_file(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except OSError as exc:  # the last buffered events could not be written
                log.warning("recording %s stopped: %s", self.path.name, exc)


def start_recording(directory: Path, size: Size, max_bytes: int) -> Recorder:
    """A recorder for a new session, in `directory` (made 0700 if missing)."""
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # in case the umask took bits away from the owner
    elif directory.stat().st_mode & 0o077:
        log.warning(
            "recordings directory %s is open to other users; the recordings in it are not",
            directory,
        )
    return Recorder(directory / recording_name(), size, max_bytes)


def list_recordings(directory: Path) -> list[dict[str, object]]:
    """Describe the recordings in `directory`, newest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _SAFE_NAME.match(p.name) and p.is_file()]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [
        {"name": p.name, "bytes": p.stat().st_size, "modified": int(p.stat().st_mtime)}
        for p in found
    ]


def recording_path(directory: Path, name: str) -> Path | None:
    """The file for a recording name, or None if the name is not a recording's."""
    if not _SAFE_NAME.match(name):
        return None
    path = directory / name
    return path if path.is_file() else None
