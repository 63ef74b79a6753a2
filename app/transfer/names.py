"""Paths a transfer names: checked, split for an upload, and offered to the browser as a name."""

from __future__ import annotations

import posixpath
import re
import secrets
from urllib.parse import quote

from app.transfer.errors import BadPath

# PATH_MAX on Linux; the target's own limits refuse anything their file system cannot hold.
MAX_PATH = 4096
# Of the name in a temporary file's name (file systems allow 255 bytes a name).
_TEMP_STEM = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def checked_path(raw: str | None) -> str:
    """A path as the SFTP server should see it; relative ones are in the SSH user's home."""
    if raw is None or not raw.strip():
        raise BadPath("name a file: the path is empty")
    if "\0" in raw:
        raise BadPath("a path cannot hold a NUL character")
    if len(raw.encode()) > MAX_PATH:
        raise BadPath(f"the path is longer than {MAX_PATH} bytes")
    return raw


def upload_target(path: str) -> tuple[str, str]:
    """The directory an upload goes into and the file's name there."""
    directory, name = posixpath.split(checked_path(path))
    if name in ("", ".", ".."):
        raise BadPath(f"{path!r} names a directory: end the path with the file's name")
    return directory, name


def temp_path(directory: str, name: str) -> str:
    """Where an upload is written before it takes its name: hidden, beside it, never reused."""
    stem = name[:_TEMP_STEM]
    return posixpath.join(directory, f".{stem}.ec2-terminal-{secrets.token_hex(6)}.part")


def attachment(path: str) -> str:
    """A Content-Disposition that offers the file under its own name, safely quoted."""
    name = posixpath.basename(path.rstrip("/")) or "download"
    fallback = _UNSAFE.sub("_", name).strip("._") or "download"
    return f"attachment; filename=\"{fallback[:150]}\"; filename*=UTF-8''{quote(name, safe='')}"
