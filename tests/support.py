"""Small helpers shared by fixtures and tests: free ports, waiting on conditions, processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def console_script(name: str) -> str:
    """An installed console script: exactly what the containers run (not `python -m ...`)."""
    return str(Path(sys.executable).parent / name)


CLI = console_script("ec2-terminal")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def poll(predicate: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Call `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
        except Exception as exc:  # not ready yet; keep the last reason for the failure message
            last_error = exc
        else:
            if result:
                return result
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port."""
    with contextlib.closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10) -> int:
    """Signal a process, wait for it, kill it if it lingers; returns its exit code."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    return process.returncode


def memory_kib(pid: int, field: str = "VmRSS") -> int:
    """A memory figure of a process from /proc/PID/status: VmRSS now, VmHWM its peak."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise ValueError(f"no {field} for pid {pid}")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    return memory_kib(pid) * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def env_without_proxies() -> dict[str, str]:
    """The environment for child processes, minus proxy settings that would catch loopback."""
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
