"""Pipe tables and code spans of a Markdown document, for tests that hold docs against code."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

_DIVIDER = re.compile(r"\|(\s*:?-+:?\s*\|)+")
# A cell ends at a pipe that is not escaped (`json\|plain` is one cell).
_CELL_END = re.compile(r"(?<!\\)\|")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_LEADING_INTEGER = re.compile(r"\s*(\d+)\b")


@dataclasses.dataclass(frozen=True)
class Table:
    """One pipe table: its column names and its rows as {column: cell text}."""

    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    line: int

    def column(self, name: str) -> list[str]:
        """The cells of one column, top to bottom."""
        return [row[name] for row in self.rows]


def _cells(line: str) -> tuple[str, ...]:
    parts = _CELL_END.split(line.strip())
    return tuple(part.strip().replace("\\|", "|") for part in parts[1:-1])


def tables(text: str) -> list[Table]:
    """Every pipe table in `text` (a header line, a divider line, then rows)."""
    lines = text.splitlines()
    found: list[Table] = []
    i = 0
    while i < len(lines):
        if not (
            lines[i].startswith("|")
            and i + 1 < len(lines)
            and _DIVIDER.fullmatch(lines[i + 1].strip())
        ):
            i += 1
            continue
        header = _cells(lines[i])
        start = i + 1
        rows: list[dict[str, str]] = []
        i += 2
        while i < len(lines) and lines[i].startswith("|"):
            cells = _cells(lines[i])
            if len(cells) != len(header):
                raise ValueError(
                    f"line {i + 1}: {len(cells)} cells in a table of {len(header)} columns"
                )
            rows.append(dict(zip(header, cells, strict=True)))
            i += 1
        found.append(Table(header, tuple(rows), start))
    return found


def tables_with(text: str, header: Sequence[str]) -> list[Table]:
    """The tables whose columns are exactly `header`."""
    return [t for t in tables(text) if t.header == tuple(header)]


def table_with(text: str, header: Sequence[str]) -> Table:
    """The one table whose columns are exactly `header`; a clear error if not exactly one."""
    matching = tables_with(text, header)
    if len(matching) != 1:
        columns = " | ".join(header)
        raise LookupError(f"expected one table with columns | {columns} |, found {len(matching)}")
    return matching[0]


def code_spans(cell: str) -> list[str]:
    """The `code` spans of a cell, in order."""
    return _CODE_SPAN.findall(cell)


def leading_integer(cell: str) -> int:
    """The number a cell starts with (`65536 (64 KiB)` is 65536)."""
    match = _LEADING_INTEGER.match(cell)
    if match is None:
        raise ValueError(f"{cell!r} does not start with a number")
    return int(match.group(1))
