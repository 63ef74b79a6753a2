"""A description of the machine a run measured, so figures from different runs can be weighed."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _memory() -> str:
    total = _first("/proc/meminfo", "MemTotal")
    if total.endswith(" kB"):
        return f"{int(total.split()[0]) / 1024 / 1024:.1f} GiB"
    return total


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages."""
    return [round(v, 2) for v in os.getloadavg()]


def describe() -> dict[str, Any]:
    """CPU model, cores, memory, kernel and Python of this machine."""
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": _memory(),
        "kernel": platform.release(),
        "system": platform.platform(terse=True),
        "python": platform.python_version(),
    }
