"""Figures the reliability tests measure, gathered in test-artifacts/reliability.json."""

from __future__ import annotations

import contextlib
import fcntl
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RELIABILITY_JSON = ROOT / "test-artifacts" / "reliability.json"


def record(section: str, figures: dict[str, Any], path: Path = RELIABILITY_JSON) -> None:
    """Merge `figures` into `section` of the JSON file (other sections and runs are kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data.setdefault(section, {}).update(figures)
        data[section]["recorded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    print(f"{section}: {json.dumps(figures, sort_keys=True)}")


@contextlib.contextmanager
def stopwatch() -> Iterator[dict[str, float]]:
    """Times the block: `with stopwatch() as t: ...`, then `t["seconds"]`."""
    timing: dict[str, float] = {}
    started = time.monotonic()
    try:
        yield timing
    finally:
        timing["seconds"] = round(time.monotonic() - started, 2)
