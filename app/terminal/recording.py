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
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}\.cast$")


def recording_name() -> str:
    """A new recording's file name: its UTC start time and a random part, never the session id.

    A session id lets its holder resume the session, so it must not appear in a listing.
    """
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{started}-{secrets.token_urlsafe(12)}{RECORDING_SUFFIX}"


class Recorder:
    """Appends a session's output and resizes to its `.cast` file; input is never recorded."""

    def __init__(self, path: Path, size: Size) -> None:
        self.path = path
        self._started = time.monotonic()
        # Output may split a UTF-8 sequence across reads; asciicast events must hold text.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        # Output may hold anything the user saw: readable by the server's own user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        self._file: IO[str] | None = os.fdopen(fd, "w", encoding="utf-8")
        header = {
            "version": 2,
            "width": size.cols,
            "height": size.rows,
            "timestamp": int(time.time()),
            "env": {"TERM": "xterm-256color"},
        }
        self._write(header)

    def _write(self, record: object) -> None:
        if self._file is None:
            return
        try:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        except OSError as exc:
            log.warning("recording %s stopped: %s", self.path.name, exc)
            self.close()

    def _event(self, kind: str, data: str) -> None:
        self._write([round(time.monotonic() - self._started, 6), kind, data])

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
            self._file.close()
            self._file = None


def start_recording(directory: Path, size: Size) -> Recorder:
    """A recorder for a new session, in `directory` (made 0700 if missing)."""
    if not directory.is_dir():
        directory.mkdir(mode=0o700, parents=True)
        directory.chmod(0o700)  # in case the umask took bits away from the owner
    elif directory.stat().st_mode & 0o077:
        log.warning(
            "recordings directory %s is open to other users; the recordings in it are not",
            directory,
        )
    return Recorder(directory / recording_name(), size)


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
