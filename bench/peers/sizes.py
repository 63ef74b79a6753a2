"""How big each workload is and how often it repeats: the full run and the quick one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

MIB = 1024 * 1024


class FloodRenderer(StrEnum):
    """The page's renderer in the flood: its own choice, or one set as a user can set it."""

    AUTO = "auto"
    WEBGL = "webgl"
    DOM = "dom"


@dataclass(frozen=True)
class Sizes:
    """Workload sizes and repetitions (rounds interleave the peers: A B C A B C ...)."""

    payload_mib: int = 256
    keys: int = 2000
    connects: int = 10
    stall_s: float = 60.0
    stall_mib: int = 256
    idle_counts: tuple[int, ...] = (1, 50, 200)
    flood_mib: int = 50
    flood_renderer: FloodRenderer = FloodRenderer.AUTO
    #: Rounds of the short workloads (throughput, echo, connect, flood).
    rounds: int = 3
    #: Rounds of the long ones (stall, idle sessions).
    slow_rounds: int = 1


FULL = Sizes()
#: Tiny sizes for developing the suite and for the test that keeps it working.
QUICK = Sizes(
    payload_mib=2,
    keys=40,
    connects=2,
    stall_s=2.0,
    stall_mib=2,
    idle_counts=(1, 3),
    flood_mib=1,
    rounds=1,
    slow_rounds=1,
)
