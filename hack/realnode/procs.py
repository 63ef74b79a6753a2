"""Starting the real node's processes (hack/localcluster's way, in the node's cgroup)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path

from hack.localcluster import control
from hack.localcluster.state import Process
from hack.realnode import cgroups
from hack.realnode.layout import NodeError


def spawn(argv: list[str], log: Path, cgroup: str, cwd: Path, env: Mapping[str, str]) -> Process:
    """Starts ARGV in its own session inside the node's cgroup, output appended to LOG."""
    proc = control.start_logged(
        argv,
        log,
        cwd,
        env,
        # Joined before exec, so nothing the process starts can escape the node's cgroup.
        preexec_fn=lambda: cgroups.join(cgroup, os.getpid()),
    )
    if not proc.alive():
        raise NodeError(f"{argv[0]} exited at once; see {log}")
    return proc


def wait_for(check: Callable[[], bool], timeout: float, what: str, proc: Process) -> None:
    """Polls CHECK; fails with PROC's log when PROC exits or TIMEOUT passes."""

    def ready() -> bool:
        if not proc.alive():
            raise NodeError(f"{what}: the process exited; its log ends:\n{control.tail(proc.log)}")
        return check()

    control.wait_until(ready, timeout, what, lambda: control.tail(proc.log))


def free_port(host: str) -> int:
    """A port free on HOST now (another process may take it before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0
