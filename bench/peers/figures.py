"""One measured figure of one trial, and which way is better."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Better(StrEnum):
    """Which direction of a figure is the good one; NONE for figures that are not compared."""

    HIGHER = "higher"
    LOWER = "lower"
    NONE = "none"


@dataclass(frozen=True)
class Figure:
    """A named value of one trial, e.g. `throughput` in MiB/s."""

    name: str
    value: float
    unit: str
    better: Better
