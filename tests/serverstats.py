"""What a running session server shows from outside: its metrics, memory, descriptors, log."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable

import httpx

from tests.fixtures_server import RunningServer
from tests.support import rss_bytes


def metric(server: RunningServer, name: str) -> float:
    """One unlabelled sample of the server's /metrics."""
    text = httpx.get(f"{server.origin}/metrics", timeout=10).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"no {name} in /metrics"
    return float(found.group(1))


def sessions_and_connections(server: RunningServer) -> tuple[float, float]:
    """The active sessions and attached connections gauges."""
    return (
        metric(server, "ec2_terminal_active_sessions"),
        metric(server, "ec2_terminal_active_connections"),
    )


def open_descriptors(pid: int) -> int:
    """File descriptors the process holds now."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(server: RunningServer) -> float:
    """The server's resident memory in MiB."""
    return rss_bytes(server.pid) / 2**20


def log_lines(server: RunningServer) -> list[str]:
    return server.log().splitlines()


def problems_in(lines: list[str]) -> list[str]:
    """Lines logged at WARNING or worse, and traceback lines (format: date time LEVEL ...)."""
    bad = {"WARNING", "ERROR", "CRITICAL"}
    return [
        line
        for line in lines
        if "Traceback" in line or (len(parts := line.split(" ", 3)) > 2 and parts[2] in bad)
    ]


async def eventually(predicate: Callable[[], object], timeout: float = 15, what: str = "") -> None:
    """Poll `predicate` without blocking the event loop (clients in it keep working)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # not yet; kept for the failure message
            last = exc
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what} (last error: {last})")
