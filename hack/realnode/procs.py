"""Starting, watching and stopping the real node's processes."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from . import cgroups
from .layout import NodeError


@dataclass(frozen=True)
class Proc:
    """A started process: its PID, the kernel's start time of that PID, and its log."""

    pid: int
    start: str
    log: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: object) -> Proc | None:
        if not isinstance(data, dict):
            return None
        pid, start, log = data.get("pid"), data.get("start"), data.get("log")
        if isinstance(pid, int) and isinstance(start, str) and isinstance(log, str):
            return cls(pid, start, log)
        return None

    def alive(self) -> bool:
        return start_time(self.pid) == self.start


def start_time(pid: int) -> str | None:
    """The kernel's start time of PID, so a recycled PID is never taken for ours."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if fields[0] != "Z" else None


def spawn(argv: list[str], log: Path, cgroup: str, cwd: Path, env: Mapping[str, str]) -> Proc:
    """Starts ARGV in its own session inside the node's cgroup, output appended to LOG."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            cwd=cwd,
            env=dict(env),
            # Joined before exec, so nothing the process starts can escape the node's cgroup.
            preexec_fn=lambda: cgroups.join(cgroup, os.getpid()),
        )
    started = start_time(proc.pid)
    if started is None:
        raise NodeError(f"{argv[0]} exited at once; see {log}")
    return Proc(proc.pid, started, str(log))


def terminate(proc: Proc, grace: float) -> None:
    """SIGTERM, then SIGKILL after GRACE seconds; returns once the process is gone."""
    if not proc.alive():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while proc.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        while proc.alive():
            time.sleep(0.05)


def tail(path: str | Path, lines: int = 25) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: Proc | None) -> None:
    """Polls CHECK; fails with PROC's log when PROC exits or TIMEOUT passes."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc and not proc.alive():
            raise NodeError(f"{what}: the process exited; its log ends:\n{tail(proc.log)}")
        if time.monotonic() > deadline:
            last = f"; its log ends:\n{tail(proc.log)}" if proc else ""
            raise NodeError(f"{what}: not ready after {timeout:.0f}s{last}")
        time.sleep(0.2)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
