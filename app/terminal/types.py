"""The terminal's domain values: a size in character cells, and how a terminal ended."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Size:
    """A terminal size in character cells."""

    cols: int
    rows: int


@dataclass(frozen=True)
class ExitInfo:
    """How a remote terminal ended."""

    exit_status: int | None
    reason: str
